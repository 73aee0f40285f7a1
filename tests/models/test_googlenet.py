"""GoogLeNet: torchvision equivalence, parameter counts, the paper's per-block numbers, flags."""

import pytest
import torch
import torchvision

from inceptionnet import create_model
from inceptionnet.models.layers import ACTS


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_torchvision_state_dict_loads_strictly_and_matches(tmp_path):
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).eval()
    path = tmp_path / "tv_googlenet.pth"
    torch.save(tv.state_dict(), path)
    ours = create_model("googlenet", aux_logits=True).eval()
    ours.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(2, 3, 64, 64)  # the equivalence does not depend on the size (64: as transform_input's)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max().item() < 1e-5
    # the same file through create_model(weights=path)
    via_weights = create_model("googlenet", aux_logits=True, weights=str(path)).eval()
    with torch.no_grad():
        assert (via_weights(x) - tv(x)).abs().max().item() < 1e-5


def test_transform_input_matches_torchvision():
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=True)
    ours = create_model("googlenet", transform_input=True)
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours.eval()(x) - tv.eval()(x)).abs().max().item() < 1e-5
    assert create_model("googlenet").transform_input is False


def test_param_counts():
    with torch.device("meta"):  # shapes only: the counts without initializing the weights
        assert n_params(create_model("googlenet")) == 6_624_904
        assert n_params(create_model("googlenet", aux_logits=True)) == 13_004_888


def _weights_no_bias(block: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in block.named_parameters() if n.endswith("weight"))


# (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) from the paper's Table 1
TABLE1 = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def test_paper_blocks_match_table1():
    m = create_model("googlenet_paper")
    in_ch = 192
    for name, (c1, c3r, c3, c5r, c5, pp) in TABLE1.items():
        block = getattr(m, name)
        assert block.branch3[1].conv.kernel_size == (5, 5)
        expected = in_ch * c1 + in_ch * c3r + c3r * c3 * 9 + in_ch * c5r + c5r * c5 * 25 + in_ch * pp
        assert _weights_no_bias(block) == expected
        in_ch = c1 + c3 + c5 + pp
    # the worked example of the tutorial (seeds/003): inception3a at 224x224
    assert _weights_no_bias(m.inception3a) == 163_328
    assert 163_328 * 28 * 28 == 128_049_152
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = m.maxpool2(m.lrn2(m.conv3(m.conv2(m.lrn1(m.maxpool1(m.conv1(x)))))))
    assert feats.shape == (1, 192, 28, 28)


def test_paper_variant_flags():
    m = create_model("googlenet_paper")
    assert isinstance(m.lrn1, torch.nn.LocalResponseNorm)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert m.conv1.conv.bias is not None
    assert m.dropout.p == 0.4
    assert m.aux1 is not None and m.aux1.dropout.p == 0.7 and m.aux1.fc1.out_features == 1024
    assert m.aux1.conv.conv.out_channels == 128
    out = m.eval()(torch.randn(1, 3, 224, 224), return_aux=True)
    assert len(out.aux) == 2


@pytest.mark.parametrize("name", ["googlenet_small", "googlenet_paper"])
@pytest.mark.parametrize(
    "flags",
    [{"norm": "none"}, *({"act": a} for a in ACTS if a != "relu"), {"pool": "avg"},
     {"branch5x5": "5x5"}, {"branch5x5": "3x3x2"}],
)  # fmt: skip
def test_ablation_flags(name, flags):
    m = create_model(name, num_classes=10, **flags)
    size = 32 if name == "googlenet_small" else m.min_input_size
    out = m(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if flags.get("norm") == "none":
        assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    if flags.get("pool") == "avg":
        assert isinstance(m.inception3a.branch4[0], torch.nn.AvgPool2d)
    if flags.get("branch5x5") == "3x3x2":
        assert len(m.inception3a.branch3) == 3


def test_bad_flag_values():
    with pytest.raises(ValueError, match="unknown act 'gelu'"):
        create_model("googlenet_small", act="gelu")
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("googlenet_small", norm="ln")
    with pytest.raises(ValueError, match="width must be positive"):
        create_model("googlenet_small", width=0)


def test_small_variant_width_and_stem():
    full = create_model("googlenet_small", num_classes=10, in_chans=1)
    quarter = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.25)
    assert n_params(quarter) < n_params(full) / 8
    assert quarter.inception3a.branch1.conv.out_channels == 16
    assert min(mod.out_channels for mod in quarter.modules() if isinstance(mod, torch.nn.Conv2d)) >= 8
    x = torch.randn(2, 1, 28, 28)
    assert quarter.forward_features(x).shape[-1] == 7
    s2 = create_model("googlenet_small", num_classes=10, in_chans=1, stem_stride=2, width=0.25)
    assert s2.forward_features(x).shape[-1] == 3


def test_rgb_weights_into_one_channel_model_sum_first_conv(tmp_path):
    rgb = create_model("googlenet_small", num_classes=10, width=0.25)
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    gray = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.25, weights=str(path))
    torch.testing.assert_close(gray.conv1.conv.weight, rgb.conv1.conv.weight.sum(1, keepdim=True))
    # a gray image repeated to RGB gives the same logits
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(gray.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)


def test_num_classes_change_reinitializes_classifier_with_warning(tmp_path):
    src = create_model("googlenet", num_classes=1000, aux_logits=True)
    path = tmp_path / "g.pth"
    torch.save(src.state_dict(), path)
    with pytest.warns(UserWarning, match=r"classifier .*fc.* re-initialized for 10 classes"):
        m = create_model("googlenet", num_classes=10, aux_logits=True, weights=str(path))
    assert m.fc.out_features == 10 and m.aux1.fc2.out_features == 10
    torch.testing.assert_close(m.inception5b.branch1.conv.weight, src.inception5b.branch1.conv.weight)
