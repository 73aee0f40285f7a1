"""The Inception family beyond GoogLeNet: equivalence with the reference implementations (torchvision,
timm, pretrainedmodels, facenet-pytorch) through ``create_model(name, weights=file)`` with random
weights, parameter counts, weight entries and the loader's handling of third-party layouts."""

import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import nn

from inceptionnet import CheckpointError, create_model, list_models
from inceptionnet.models import get_weight_entry, list_weights
from inceptionnet.models.bn_inception import _pass_through_pool

FAMILY = ["bn_inception", "inception_resnet_v1", "inception_resnet_v2", "inception_v3", "inception_v4"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that a wrong eps, a wrong key
    mapping or a missing BN shows up in the outputs (fresh BNs are the identity in eval mode)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    assert b.abs().max() > 0  # a meaningful comparison, not two zero tensors
    return (a - b).abs().max().item()


def facenet_inception_resnet_v1() -> type:
    """facenet-pytorch's InceptionResnetV1. Its module imports ``requests`` (only to download weights),
    which it does not declare: without it installed, a stub stands in for the import only."""
    if importlib.util.find_spec("requests") is not None:
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

        return InceptionResnetV1
    stub, adapters = types.ModuleType("requests"), types.ModuleType("requests.adapters")
    adapters.HTTPAdapter = object  # type: ignore[attr-defined]
    stub.adapters = adapters  # type: ignore[attr-defined]
    sys.modules["requests"], sys.modules["requests.adapters"] = stub, adapters
    try:
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1
    finally:
        del sys.modules["requests"], sys.modules["requests.adapters"]
    return InceptionResnetV1


# --------------------------------------------------------------------------------------------------
# Registry, parameter counts, weight entries


def test_family_is_registered():
    assert set(FAMILY) <= set(list_models())
    assert list_models("inception_resnet*") == ["inception_resnet_v1", "inception_resnet_v2"]


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("bn_inception", {}, 11_295_240),  # pretrainedmodels' bninception
        ("inception_v3", {}, 23_834_568),
        ("inception_v3", {"aux_logits": True}, 27_161_264),  # torchvision's, with AuxLogits
        ("inception_v4", {}, 42_679_816),  # timm's
        ("inception_resnet_v2", {}, 55_843_464),  # timm's
        ("inception_resnet_v1", {}, 22_756_328),  # the paper's (5/10/5 blocks)
        # facenet-pytorch's InceptionResnetV1(classify=False)
        (
            "inception_resnet_v1",
            {"num_classes": 0, "embed_dim": 512, "num_blocks": (5, 10, 6), "slim_final_block": True},
            23_482_624,
        ),
    ],
)
def test_param_counts(name, kwargs, expected):
    with torch.device("meta"):  # shapes only: the counts without initializing 10-55 M weights
        assert n_params(create_model(name, **kwargs)) == expected


def test_weight_entries_metadata():
    expected = {
        ("inception_v3", "imagenet1k_v1"): 27_161_264,
        ("inception_v4", "tf_in1k"): 42_679_816,
        ("inception_resnet_v2", "tf_in1k"): 55_843_464,
        ("bn_inception", "imagenet_caffe"): 11_295_240,
        ("inception_resnet_v1", "vggface2"): 23_482_624 + 512 * 8631 + 8631,
        ("inception_resnet_v1", "casia_webface"): 23_482_624 + 512 * 10575 + 10575,
    }
    for (model, tag), params in expected.items():
        assert tag in list_weights(model)
        e = get_weight_entry(model, tag)
        assert e is not None and e.params == params and e.url and e.filename and e.gmacs
        assert e.accuracy and e.source
    bgr = get_weight_entry("bn_inception", "imagenet_caffe")
    assert bgr is not None
    assert (bgr.input_space, bgr.input_range, bgr.mean, bgr.std) == (
        "BGR",
        (0.0, 255.0),
        (104.0, 117.0, 128.0),
        (1.0, 1.0, 1.0),
    )
    tv = get_weight_entry("inception_v3", "imagenet1k_v1")
    assert tv is not None and tv.sha256 == "0cc3c7bd" and tv.model_kwargs["transform_input"] is True


def test_min_input_sizes():
    with torch.device("meta"):  # declared sizes: no weights needed
        assert create_model("inception_v3").min_input_size == 75  # torchvision's documented minimum
        assert create_model("inception_v3", aux_logits=True).min_aux_input_size == 299
        assert create_model("inception_v3").min_aux_input_size == 75  # no aux head, no aux minimum


# --------------------------------------------------------------------------------------------------
# torchvision: inception_v3


@pytest.fixture(scope="module")
def tv_inception_v3(tmp_path_factory):
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    randomize_bn(tv)
    path = tmp_path_factory.mktemp("tv") / "tv_inception_v3.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


@pytest.mark.slow
def test_inception_v3_matches_torchvision(tv_inception_v3):
    tv, path = tv_inception_v3
    via_file = create_model("inception_v3", aux_logits=True, weights=str(path)).eval()
    via_file.load_state_dict(torch.load(path, weights_only=True), strict=True)  # torchvision's keys
    feats: list[torch.Tensor] = []
    hook = tv.Mixed_6e.register_forward_hook(lambda mod, inp, out: feats.append(out))
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        ref = tv(x)
        ref_aux = tv.AuxLogits(feats[0])
        out = via_file(x, return_aux=True)
        assert isinstance(via_file(x), torch.Tensor)
    hook.remove()
    assert max_diff(out.logits, ref) < 1e-5
    assert len(out.aux) == 1 and max_diff(out.aux[0], ref_aux) < 1e-5
    # without the aux head the same file loads too (AuxLogits is skipped), same logits
    no_aux = create_model("inception_v3", weights=str(path)).eval()
    assert no_aux.AuxLogits is None
    with torch.no_grad():
        assert max_diff(no_aux(x), ref) < 1e-5


@pytest.mark.slow
def test_inception_v3_transform_input_matches_torchvision():
    tv = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=True, transform_input=True
    )
    randomize_bn(tv)
    ours = create_model("inception_v3", transform_input=True).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert max_diff(ours(x), tv(x)) < 1e-5
    assert create_model("inception_v3").transform_input is False
    with pytest.raises(ValueError, match="transform_input"):
        create_model("inception_v3", transform_input=True, in_chans=1)


# --------------------------------------------------------------------------------------------------
# timm: inception_v4, inception_resnet_v2


@pytest.fixture(scope="module")
def timm_models(tmp_path_factory):
    timm = pytest.importorskip("timm")
    out = {}
    root = tmp_path_factory.mktemp("timm")
    for name in ("inception_v4", "inception_resnet_v2"):
        ref = randomize_bn(timm.create_model(name, pretrained=False))
        path = root / f"{name}.pth"
        torch.save(ref.state_dict(), path)
        out[name] = (ref, path)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_timm_state_dict_loads_strictly_and_matches(timm_models, name):
    ref, path = timm_models[name]
    via_file = create_model(name, weights=str(path)).eval()
    via_file.load_state_dict(torch.load(path, weights_only=True), strict=True)  # timm's keys, as they are
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert max_diff(via_file(x), ref(x)) < 1e-5
        torch.testing.assert_close(via_file.forward_features(x), ref.forward_features(x), rtol=0, atol=1e-5)
    cfg = via_file.default_cfg
    assert cfg["input_size"] == (3, 299, 299) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert cfg["interpolation"] == "bicubic" and cfg["first_conv"] == ref.default_cfg["first_conv"]
    assert cfg["classifier"] == ref.default_cfg["classifier"]


@pytest.mark.slow
def test_in_chans_one_sums_the_first_conv(timm_models):
    ref, path = timm_models["inception_v4"]
    gray = create_model("inception_v4", in_chans=1, weights=str(path)).eval()
    w = ref.state_dict()["features.0.conv.weight"]
    torch.testing.assert_close(gray.features[0].conv.weight, w.sum(dim=1, keepdim=True))
    x = torch.randn(1, 1, 75, 75)
    with torch.no_grad():  # a gray image = the same image in all three RGB channels
        torch.testing.assert_close(gray(x), ref(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)
    assert gray.default_cfg["input_size"] == (1, 299, 299) and len(gray.default_cfg["mean"]) == 1


@pytest.mark.slow
def test_num_classes_change_keeps_the_trunk(timm_models):
    ref, path = timm_models["inception_resnet_v2"]
    with pytest.warns(UserWarning, match="classif re-initialized for 10 classes"):
        ours = create_model("inception_resnet_v2", num_classes=10, weights=str(path)).eval()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert ours(x).shape == (1, 10)
        assert max_diff(ours.forward_features(x), ref.forward_features(x)) < 1e-5
    ours.reset_classifier(3)
    assert ours(x).shape == (1, 3) and ours.default_cfg["num_classes"] == 3


@pytest.mark.slow
def test_foreign_checkpoint_for_another_model_is_refused(timm_models):
    _, path = timm_models["inception_v4"]
    with pytest.raises(CheckpointError, match="does not fit model InceptionResNetV2.*missing keys"):
        create_model("inception_resnet_v2", weights=str(path))


# --------------------------------------------------------------------------------------------------
# pretrainedmodels: bninception (key map, BGR 0-255 input config)


@pytest.fixture(scope="module")
def pm_bninception(tmp_path_factory):
    from pretrainedmodels.models.bninception import bninception

    ref = randomize_bn(bninception(num_classes=1000, pretrained=None))
    with torch.no_grad():  # the Caffe port has conv biases: make them count
        for m in ref.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("pm") / "bn_inception-random.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


@pytest.mark.slow
def test_pretrainedmodels_bninception_loads_and_matches(pm_bninception, tmp_path):
    ref, path = pm_bninception
    ours = create_model("bn_inception", weights=str(path)).eval()
    x = torch.randn(1, 3, 224, 224)  # pretrainedmodels pools with a fixed 7x7 window: 224 only
    with torch.no_grad():
        expected = ref(x)
        assert max_diff(ours(x), expected) < 1e-5
    cfg = ours.default_cfg  # the layout brings the input config of its weight entry
    assert cfg["input_space"] == "BGR" and cfg["input_range"] == (0.0, 255.0)
    assert cfg["mean"] == (104.0, 117.0, 128.0) and cfg["std"] == (1.0, 1.0, 1.0)
    assert cfg["input_size"] == (3, 224, 224)
    # the same layout as .safetensors
    st = tmp_path / "bn_inception.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(st))
    from_st = create_model("bn_inception", weights=str(st)).eval()
    with torch.no_grad():
        assert max_diff(from_st(x), expected) < 1e-5
    assert from_st.default_cfg["input_space"] == "BGR"


@pytest.mark.slow
def test_caffe_port_with_1xC_batchnorm_tensors_loads(pm_bninception, tmp_path):
    """tsn-pytorch's copy of the same port stores BN tensors as 1 x C and (PyTorch < 0.4.1) has no
    num_batches_tracked."""
    ref, _ = pm_bninception
    old = {
        k: (v.reshape(1, -1) if "_bn." in k else v)
        for k, v in ref.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "bn_inception-old.pth"
    torch.save(old, path)
    ours = create_model("bn_inception", weights=str(path))
    reference = create_model("bn_inception", weights=str(path))
    assert ours.inception3a.branch3x3dbl_2.bn.weight.shape == (96,)
    for (k, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), k
    torch.testing.assert_close(ours.conv1.bn.running_var, ref.conv1_7x7_s2_bn.running_var)
    torch.testing.assert_close(ours.fc.weight, ref.last_linear.weight)


@pytest.mark.slow
def test_bgr_weights_into_one_channel_average_the_input_statistics(pm_bninception):
    ref, path = pm_bninception
    gray = create_model("bn_inception", in_chans=1, weights=str(path))
    torch.testing.assert_close(gray.conv1.conv.weight, ref.conv1_7x7_s2.weight.sum(dim=1, keepdim=True))
    cfg = gray.default_cfg
    assert cfg["input_size"] == (1, 224, 224) and cfg["input_range"] == (0.0, 255.0)
    assert cfg["mean"] == pytest.approx(((104 + 117 + 128) / 3,)) and cfg["std"] == (1.0,)


def test_bn_inception_blocks_follow_the_paper_table():
    with torch.device("meta"):  # structure and shapes only (meta kernels check shapes as CPU's do)
        m = create_model("bn_inception")
    # (block, out channels, pool kind) from Figure 5 of the BN paper
    table = {
        "inception3a": (256, nn.AvgPool2d),
        "inception3b": (320, nn.AvgPool2d),
        "inception3c": (576, nn.Sequential),  # stride 2, max pool pass-through
        "inception4a": (576, nn.AvgPool2d),
        "inception4b": (576, nn.AvgPool2d),
        "inception4c": (608, nn.AvgPool2d),
        "inception4d": (608, nn.AvgPool2d),
        "inception4e": (1056, nn.Sequential),
        "inception5a": (1024, nn.AvgPool2d),
        "inception5b": (1024, nn.MaxPool2d),
    }
    for name, (out, pool) in table.items():
        block = getattr(m, name)
        assert block.out_channels == out and isinstance(block.pool, pool), name
    assert m.inception3c.branch1x1 is None and m.inception3c.branch_pool is None
    assert m.inception3c.branch3x3_2.conv.stride == (2, 2)
    x = torch.randn(1, 3, 224, 224, device="meta")
    with torch.no_grad():
        assert m.eval().forward_features(x).shape == (1, 1024, 7, 7)
        for size in (99, 131, 225):  # odd sizes work (Caffe's model cannot concatenate there)
            assert m(torch.randn(1, 3, size, size, device="meta")).shape == (1, 1000)


def test_pass_through_pool_is_caffes_ceil_pool_at_even_sizes():
    pool = _pass_through_pool()
    for n in range(2, 30, 2):
        x = torch.randn(1, 2, n, n)
        assert torch.equal(pool(x), F.max_pool2d(x, 3, stride=2, ceil_mode=True))
    for n in range(1, 30):  # and sized like the stride-2 convs beside it at every size
        assert pool(torch.randn(1, 1, n, n)).shape[-1] == (n - 1) // 2 + 1


def test_bn_inception_paper_flags():
    with torch.device("meta"):  # structure, counts and shapes only
        base = create_model("bn_inception")
        no_bias = create_model("bn_inception", conv_bias=False)
        sep = create_model("bn_inception", stem_separable=True).eval()
    conv_out = sum(m.out_channels for m in base.modules() if isinstance(m, nn.Conv2d))
    assert n_params(base) - n_params(no_bias) == conv_out
    assert sep.conv1.conv_dw.groups == 3 and sep.conv1.conv_dw.out_channels == 24
    assert sep.default_cfg["first_conv"] == "conv1.conv_dw"
    with torch.no_grad():
        assert sep(torch.randn(1, 3, 64, 64, device="meta")).shape == (1, 1000)


# --------------------------------------------------------------------------------------------------
# facenet-pytorch: inception_resnet_v1 (key map, 512-d embeddings)


@pytest.fixture(scope="module")
def facenet(tmp_path_factory):
    ref = randomize_bn(facenet_inception_resnet_v1()(pretrained=None, classify=True, num_classes=7))
    path = tmp_path_factory.mktemp("facenet") / "facenet-random.pt"
    torch.save(ref.state_dict(), path)
    return ref, path


@pytest.mark.slow
def test_facenet_embeddings_and_logits_match(facenet):
    ref, path = facenet
    x = torch.randn(2, 3, 107, 107)
    embed = create_model("inception_resnet_v1", num_classes=0, weights=str(path)).eval()
    logits = create_model("inception_resnet_v1", num_classes=7, weights=str(path)).eval()
    with torch.no_grad():
        ref.classify = False
        expected = ref(x)
        ref.classify = True
        expected_logits = ref(x)
        out = embed(x)
        assert out.shape == (2, 512)
        assert max_diff(out, expected) < 1e-5
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
        assert max_diff(logits(x), expected_logits) < 1e-5
        assert embed.forward_head(embed.forward_features(x), pre_logits=True).shape == (2, 512)
    cfg = embed.default_cfg  # the layout brings the facenet input config
    assert cfg["input_size"] == (3, 160, 160) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert len(embed.repeat_2) == 5 and embed.block8.relu is None


@pytest.mark.slow
def test_facenet_embedding_only_file_loads(tmp_path):
    ref = randomize_bn(facenet_inception_resnet_v1()(pretrained=None, classify=False))
    path = tmp_path / "facenet-embed.pt"
    torch.save(ref.state_dict(), path)
    ours = create_model("inception_resnet_v1", num_classes=0, weights=str(path)).eval()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) < 1e-5
    # a classifier the file does not have: fresh, with a warning
    with pytest.warns(UserWarning, match="re-initialized for 5 classes"):
        five = create_model("inception_resnet_v1", num_classes=5, weights=str(path))
    assert five.classif.weight.shape == (5, 512)


def test_inception_resnet_v1_paper_flags():
    with torch.device("meta"):  # structure only
        paper = create_model("inception_resnet_v1")
    assert (len(paper.repeat), len(paper.repeat_1), len(paper.repeat_2) + 1) == (5, 10, 5)
    assert paper.block8.relu is not None and paper.block8.scale == 0.2
    assert paper.repeat[0].scale == 0.17 and paper.repeat_1[0].scale == 0.1
    assert paper.last_linear is None and paper.head_hidden_size == paper.num_features == 1792
    with torch.device("meta"):
        slim = create_model("inception_resnet_v1", slim_final_block=True, residual_scales=(1.0, 1.0, 1.0))
    assert slim.block8.relu is None and slim.block8.scale == 1.0 and slim.repeat[0].scale == 1.0
    with torch.device("meta"), pytest.raises(ValueError, match="num_blocks"):
        create_model("inception_resnet_v1", num_blocks=(5, 0, 5))
    with torch.device("meta"):
        v2 = create_model("inception_resnet_v2", num_blocks=(5, 10, 5), slim_final_block=False)
    assert (len(v2.repeat), len(v2.repeat_1), len(v2.repeat_2)) == (5, 10, 4)
    assert v2.block8.relu is not None


# --------------------------------------------------------------------------------------------------
# Weight entries: hash check and the offline message


def test_sha256_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    cached = tmp_path / "checkpoints" / "inception_v3_google-0cc3c7bd.pth"
    cached.parent.mkdir()
    torch.save({"fc.weight": torch.zeros(2, 2)}, cached)  # not the published file
    with pytest.raises(
        CheckpointError, match=r"sha256 of .*inception_v3_google-0cc3c7bd\.pth.*expected 0cc3c7bd"
    ):
        create_model("inception_v3", weights="imagenet1k_v1")


def test_offline_without_cached_file_says_where_to_put_it(tmp_path, monkeypatch):
    def no_network(url, dst, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected = tmp_path / "checkpoints" / "timm-inception_v4.tf_in1k.safetensors"
    with pytest.raises(FileNotFoundError, match=rf"put the file at {expected}"):
        create_model("inception_v4", weights="tf_in1k")


def test_bgr_0_255_input_config_is_honoured_by_the_transforms():
    from inceptionnet.data import InputConfig, eval_transform

    cfg = InputConfig(
        4, 3, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), input_space="BGR", input_range=(0.0, 255.0)
    )
    img = torch.zeros(3, 4, 4, dtype=torch.uint8)
    img[0] = 200  # red
    x = eval_transform(cfg, 3, 4)(img)
    # BGR order, 0-255 scale, Caffe means subtracted: channel 2 is the red one
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([0 - 104.0, 0 - 117.0, 200 - 128.0]))
    rt = InputConfig.from_dict(cfg.to_dict())
    assert rt.input_space == "BGR" and rt.input_range == (0.0, 255.0)
