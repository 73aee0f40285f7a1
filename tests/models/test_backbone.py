"""The models as backbones (issue 22): timm's own model checks on every registered model, the stage
declarations against the written-out forwards, gradient checkpointing, and real clients
(torchvision's Faster R-CNN and an FCN head, timm's data config, ``inceptionnet embed``).

The ``test_model_*`` functions are timm's ``tests/test_models.py`` bodies (timm 1.0.x), adapted: our
``create_model`` and registry, small inputs (timm's ``_get_input_size`` with a small target gives each
model's ``min_input_size``), torchvision's default FX tracer, each model built once (``num_classes=42``)
and shared read-only or deep-copied, ``test_model_forward_fx`` and ``test_model_backward_fx`` as one
test on one trace. The one documented difference: the aux heads of ``googlenet_paper`` get
gradients only from ``model(x, return_aux=True)`` (our contract: ``forward`` returns the logits and
computes aux heads only when asked)."""

import copy
import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import (
    NodePathTracer,
    create_feature_extractor,
    get_graph_node_names,
)

import inceptionnet
from helpers import model_params
from inceptionnet import InputShapeError, create_model
from inceptionnet.models import FeatureInfo, feature_take_indices
from inceptionnet.models._features import FeatureDictNet, FeatureListNet

MODELS = model_params()
torch_device = "cpu"
TARGET = 64  # inputs above this fall back to the model's min_input_size (timm's rule, smaller target)


def _get_input_size(model: nn.Module, target: int | None = TARGET) -> tuple[int, ...]:
    """timm's ``_get_input_size`` on our ``default_cfg``."""
    cfg = model.default_cfg
    input_size = cfg["input_size"]
    if cfg.get("fixed_input_size", None):
        return input_size
    min_input_size = cfg.get("min_input_size", None)
    if min_input_size:
        if target and max(input_size) > target:
            input_size = min_input_size
    elif target and max(input_size) > target:
        input_size = tuple(min(x, target) for x in input_size)
    return input_size


NUM_CLASSES = 42  # what timm's backward tests use; one configuration for every per-model test here
OPTIMIZED = "googlenet_small"  # the one model run through the optimizing TorchScript executor


@functools.cache
def _pristine(name: str, kwargs: tuple[tuple[str, Any], ...]) -> nn.Module:
    return create_model(name, num_classes=NUM_CLASSES, **dict(kwargs)).eval()


def _shared(name: str, **kwargs: Any) -> nn.Module:
    """``create_model(name, num_classes=NUM_CLASSES, **kwargs)`` in eval mode, built once per
    configuration for this file (the big models take seconds to initialize) and shared: READ ONLY
    (eval-mode forwards, scripting, tracing); a test that trains or changes it takes ``_model``."""
    return _pristine(name, tuple(sorted(kwargs.items())))


def _model(name: str, **kwargs: Any) -> nn.Module:
    """A deep copy of ``_shared(name, **kwargs)``, for a test that changes it."""
    return copy.deepcopy(_shared(name, **kwargs))


@functools.cache
def _meta_pristine(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name).eval()


def _meta(name: str) -> nn.Module:
    """``create_model(name)`` on the meta device (shapes only), built once per model for this file
    and deep-copied (no weights to copy)."""
    return copy.deepcopy(_meta_pristine(name))


def _aux_params(model: nn.Module) -> set[str]:
    """Parameters of aux heads: they get gradients only with ``return_aux=True``."""
    heads = model.default_cfg.get("aux_modules", ()) if getattr(model, "has_aux", False) else ()
    return {n for n, _ in model.named_parameters() if n.split(".", 1)[0] in heads}


# --------------------------------------------------------------------------------------------------
# timm's checks


def _check_maps(outputs, expected_channels, expected_reduction, input_size, batch_size) -> None:
    """The loop timm's three feature tests share: channels, sizes within stride, batch, no NaN."""
    assert len(expected_channels) == len(outputs)
    spatial_size = input_size[-2:]
    for e, r, o in zip(expected_channels, expected_reduction, outputs):
        assert e == o.shape[1]
        assert o.shape[2] <= math.ceil(spatial_size[0] / r) + 1
        assert o.shape[3] <= math.ceil(spatial_size[1] / r) + 1
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward(model_name, batch_size):
    """Run a single forward pass with each model"""
    model = _shared(model_name)
    model.eval()

    input_size = _get_input_size(model)
    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"

    # Test that grad-checkpointing, if supported, doesn't cause model failures or change in output
    model.set_grad_checkpointing()
    try:
        outputs2 = model(inputs)
    finally:
        model.set_grad_checkpointing(False)  # the shared model as it was
    assert torch.allclose(outputs, outputs2, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [2])
def test_model_backward(model_name, batch_size):
    """Run a single forward pass with each model"""
    model = _model(model_name)
    input_size = _get_input_size(model)
    encoder_only = model.num_classes == 0
    num_params = sum([x.numel() for x in model.parameters()])
    model.train()

    inputs = torch.randn((batch_size, *input_size))
    inputs = inputs.to(torch_device)
    model.to(torch_device)
    outputs = model(inputs)
    outputs.mean().backward()
    aux = _aux_params(model)  # the documented exception: no gradient without return_aux=True
    for n, x in model.named_parameters():
        assert (x.grad is None) == (n in aux), f"gradient for {n}: {x.grad is not None}"
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    if encoder_only:
        assert outputs.shape[1] == model.num_features
    else:
        assert outputs.shape[-1] == NUM_CLASSES
    assert num_params - sum(p.numel() for n, p in model.named_parameters() if n in aux) == num_grad
    assert not torch.isnan(outputs).any(), "Output included NaNs"

    if aux:  # asked for, the aux heads learn too
        model.zero_grad(set_to_none=True)
        side = max(input_size[-1], model.min_aux_input_size)
        out = model(torch.randn(batch_size, 3, side, side), return_aux=True)
        (out.logits.mean() + sum(a.mean() for a in out.aux)).backward()
        assert all(x.grad is not None for x in model.parameters())


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_default_cfgs(model_name, batch_size):
    """Run a single forward pass with each model (at the cfg's input size, on the meta device: shapes only)"""
    device = "meta"
    model = _meta(model_name)
    model.eval()
    assert model.num_classes >= 0
    assert model.num_features > 0
    assert model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg

    pool_size = cfg["pool_size"]
    input_size = model.default_cfg["input_size"]
    assert cfg["fixed_input_size"] is False
    input_tensor = torch.randn((batch_size, *input_size), device=device)

    # test forward_features (always unpooled) & forward_head w/ pre_logits
    outputs = model.forward_features(input_tensor)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    assert outputs.shape[2] == pool_size[0], f"unpooled feature shape {outputs.shape} != config"
    assert outputs.shape[3] == pool_size[1], f"unpooled feature shape {outputs.shape} != config"
    assert outputs.shape[1] == model.num_features
    assert outputs_pre.shape[1] == model.head_hidden_size

    # test forward after deleting the classifier, output should be poooled, size(-1) == model.num_features
    model.reset_classifier(0)
    assert model.num_classes == 0
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 2
    assert outputs.shape[1] == model.head_hidden_size
    assert outputs.shape == outputs_pre.shape

    # test model forward after removing pooling and classifier
    model.reset_classifier(0, "")  # reset classifier and disable global pooling
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 4
    assert outputs.shape[2] == pool_size[0] and outputs.shape[3] == pool_size[1]

    # test classifier + global pool deletion via __init__
    with torch.device(device):
        model = create_model(model_name, num_classes=0, global_pool="").eval()
    outputs = model.forward(input_tensor)
    assert len(outputs.shape) == 4
    assert outputs.shape[2] == pool_size[0] and outputs.shape[3] == pool_size[1]

    # check classifier name matches default_cfg
    if cfg.get("num_classes", None):
        classifier = cfg["classifier"]
        if not isinstance(classifier, tuple | list):
            classifier = (classifier,)
        for c in classifier:
            assert c + ".weight" in state_dict, f"{c} not in model params"

    # check first conv(s) names match default_cfg
    first_conv = cfg["first_conv"]
    if isinstance(first_conv, str):
        first_conv = (first_conv,)
    assert isinstance(first_conv, tuple | list)
    for fc in first_conv:
        assert fc + ".weight" in state_dict, f"{fc} not in model params"


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_torchscript(model_name, batch_size):
    """Run a single forward pass with each model (scripted directly, as timm scripts its models;
    through the optimizing executor for one model, the TorchScript interpreter without its
    optimization passes for the others: the same compiled graph, seconds less per big model)"""
    model = _shared(model_name)
    input_size = _get_input_size(model)
    model.eval()

    scripted = torch.jit.script(model)
    scripted.to(torch_device)
    inputs = torch.randn((batch_size, *input_size))
    with torch.jit.optimized_execution(model_name == OPTIMIZED):
        outputs = scripted(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"
    assert torch.equal(outputs, model(inputs))  # and the same as eager


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
@pytest.mark.parametrize(
    "feature_cls", [None, "getter"]
)  # timm's _forward_features and _intermediates_features
def test_model_forward_features(model_name, batch_size, feature_cls):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(model_name, features_only=True, feature_cls=feature_cls)
    model.eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 default feat levels

    input_size = _get_input_size(model)
    outputs = model(torch.randn((batch_size, *input_size)))
    _check_maps(outputs, expected_channels, expected_reduction, input_size, batch_size)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_intermediates(model_name, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    model = _shared(model_name)
    model.eval()
    feature_info = FeatureInfo(model.feature_info, len(model.feature_info))
    expected_channels = feature_info.channels()
    expected_reduction = feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 feature levels

    input_size = _get_input_size(model)
    output_fmt = "NCHW"
    inpt = torch.randn((batch_size, *input_size))
    output, intermediates = model.forward_intermediates(inpt, output_fmt=output_fmt)
    _check_maps(intermediates, expected_channels, expected_reduction, input_size, batch_size)

    output2 = model.forward_features(inpt)
    assert torch.allclose(output, output2)

    # Test that grad-checkpointing, if supported
    model.set_grad_checkpointing()
    try:
        output3, _ = model.forward_intermediates(inpt, output_fmt=output_fmt)
    finally:
        model.set_grad_checkpointing(False)  # the shared model as it was
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


def _create_fx_model(model: nn.Module, train: bool = False) -> nn.Module:
    """timm's, with torchvision's default tracer (no leaf modules or autowrapped functions needed)."""
    train_nodes, eval_nodes = get_graph_node_names(model)

    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = NodePathTracer()
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]

    return create_feature_extractor(
        model, train_return_nodes=train_return_nodes, eval_return_nodes=eval_return_nodes
    )


@pytest.mark.parametrize("model_name", MODELS)
def test_model_forward_fx_and_backward_fx(model_name):
    """timm's ``test_model_forward_fx`` (batch 1: symbolically trace each model and run a single
    forward pass through the resulting GraphModule; its output is the same as the original Module's)
    and ``test_model_backward_fx`` (batch 2: a single backward pass through the GraphModule), on one
    trace: ``_create_fx_model(train=True)`` holds the eval graph ``train=False`` builds and the train graph."""
    model = _model(model_name)
    input_size = _get_input_size(model)
    model.train()
    num_params = sum([x.numel() for x in model.parameters()])
    # the traced forward is the logits path: aux heads get no gradient (and are not in the graph)
    num_aux = sum(p.numel() for n, p in model.named_parameters() if n in _aux_params(model))
    fx_model = _create_fx_model(model, train=True)

    # forward, batch 1
    model.eval()
    fx_model.eval()
    with torch.inference_mode():
        inputs = torch.randn((1, *input_size))
        outputs = model(inputs)
        fx_outputs = torch.cat(tuple(fx_model(inputs).values()))

    assert torch.all(fx_outputs == outputs)
    assert outputs.shape[0] == 1
    assert not torch.isnan(outputs).any(), "Output included NaNs"

    # backward, batch 2
    fx_model.train()
    outputs = torch.cat(tuple(fx_model(torch.randn((2, *input_size))).values()))
    outputs.mean().backward()
    for n, x in fx_model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum([x.grad.numel() for x in fx_model.parameters() if x.grad is not None])

    assert outputs.shape[-1] == NUM_CLASSES
    assert num_params - num_aux == num_grad
    assert not torch.isnan(outputs).any(), "Output included NaNs"


# --------------------------------------------------------------------------------------------------
# The stage declarations cannot drift from the written-out forwards


@pytest.mark.parametrize("model_name", MODELS)
def test_declared_trunk_is_the_written_out_forward(model_name):
    """Running the declared trunk module by module (what features_only, forward_intermediates and
    gradient checkpointing use) gives exactly ``_features``' output and aux logits; the trunk holds
    every module that is not head or aux head."""
    aux_kw = {"aux_logits": True} if model_name in ("googlenet", "inception_v3") else {}
    model = _shared(model_name, **aux_kw).eval()
    side = max(model.min_input_size, model.min_aux_input_size)
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        feats, aux = model._features(x, True)
        trunk, _, trunk_aux = model._run_trunk(x, with_aux=True)
    assert torch.equal(trunk, feats) and len(aux) == len(trunk_aux) == len(model.aux_taps) * model.has_aux
    assert all(torch.equal(a, b) for a, b in zip(aux, trunk_aux))
    cfg = model.default_cfg
    head = {model._pool_attr, cfg["classifier"], "dropout", "head_drop", "last_linear", "last_bn"}
    children = {n for n, _ in model.named_children()}
    assert children - head - set(cfg.get("aux_modules", ())) == {n.split(".")[0] for n in model.layer_names}
    assert model.feature_ends == sorted(model.feature_ends)
    assert set(model.aux_taps.values()) <= set(cfg.get("aux_modules", ()))


@pytest.mark.parametrize("model_name", MODELS)
def test_declared_feature_info_is_measured(model_name):
    """Declared channels and reductions (and the cfg's pool_size) are what the network computes at
    its cfg input size (meta device: shapes only); timm's three models have timm's feature_info."""
    model = _meta(model_name).eval()
    side = model.default_cfg["input_size"][-1]
    final, maps = model.forward_intermediates(torch.empty(1, 3, side, side, device="meta"))
    for fi, o in zip(model.feature_info, maps):
        assert o.shape[1] == fi["num_chs"], fi
        assert 2 ** round(math.log2(side / o.shape[-1])) == fi["reduction"], (fi, o.shape)
    assert tuple(final.shape[-2:]) == model.default_cfg["pool_size"] == (model.feature_side(side),) * 2
    timm_info = {
        "inception_v3": (
            [64, 192, 288, 768, 2048],
            ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"],
        ),
        "inception_v4": (
            [64, 160, 384, 1024, 1536],
            ["features.2", "features.3", "features.9", "features.17", "features.21"],
        ),
        "inception_resnet_v2": (
            [64, 192, 320, 1088, 1536],
            ["conv2d_2b", "conv2d_4a", "repeat", "repeat_1", "conv2d_7b"],
        ),
    }  # timm 1.0.31: timm.create_model(name, features_only=True).feature_info
    if model_name in timm_info:
        info = FeatureInfo(model.feature_info, 5)
        assert (info.channels(), info.module_name()) == timm_info[model_name]
        assert info.reduction() == [2, 4, 8, 16, 32]


def test_feature_info_matches_timm_when_installed():
    timm = pytest.importorskip("timm")
    for name in ("inception_v3", "inception_v4", "inception_resnet_v2"):
        with torch.device("meta"):
            theirs = timm.create_model(name, features_only=True, pretrained=False).feature_info
            ours = create_model(name, features_only=True).feature_info
        assert ours.channels() == theirs.channels() and ours.reduction() == theirs.reduction()
        assert ours.module_name() == theirs.module_name()


# --------------------------------------------------------------------------------------------------
# Feature extractors, intermediates, pruning, pooling


def test_feature_take_indices_is_timms():
    assert feature_take_indices(5) == ([0, 1, 2, 3, 4], 4)
    assert feature_take_indices(5, 2) == ([3, 4], 4)
    assert feature_take_indices(5, [0, -1]) == ([0, 4], 4)
    with pytest.raises(ValueError, match="out of range"):
        feature_take_indices(5, [5])
    with pytest.raises(ValueError, match="out of range"):
        feature_take_indices(5, 6)


def test_features_only_out_indices_dict_and_errors():
    m = create_model("googlenet", features_only=True, out_indices=(1, -1), feature_cls="dict").eval()
    assert isinstance(m, FeatureDictNet) and not isinstance(m, FeatureListNet)
    assert m.feature_info.out_indices == (1, 4)
    out = m(torch.randn(1, 3, 64, 64))
    assert list(out) == ["1", "4"] and out["4"].shape[1] == 1024
    assert m.feature_info.module_name() == ["conv3", "inception5b"]
    assert m.feature_info.get_dicts(keys=["num_chs"]) == [{"num_chs": 192}, {"num_chs": 1024}]
    with torch.device("meta"):  # structure and refusals: no weights needed
        last2 = create_model("googlenet", features_only=True, out_indices=2).eval()
        early = create_model("googlenet", features_only=True, out_indices=(0, 1))
        with pytest.raises(ValueError, match="out of range"):
            create_model("googlenet", features_only=True, out_indices=(5,))
        with pytest.raises(ValueError, match="unknown feature_cls"):
            create_model("googlenet", features_only=True, feature_cls="hooks")
        with pytest.raises(ValueError, match="need features_only=True"):
            create_model("googlenet", out_indices=(1,))
    assert last2.feature_info.reduction() == [16, 32] and "inception5b" in dict(last2.named_children())
    assert list(dict(early.named_children())) == ["conv1", "maxpool1", "lrn1", "conv2", "conv3"]
    assert "fc.weight" not in early.state_dict() and "conv1.conv.weight" in early.state_dict()
    with pytest.raises(InputShapeError, match="4-D"):
        m(torch.randn(3, 64, 64))
    with pytest.raises(InputShapeError, match="too small"):
        m(torch.randn(1, 3, 8, 8))


def test_forward_intermediates_indices_stop_early_and_errors():
    m = create_model("googlenet_small", width=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = m.forward_intermediates(x, indices=[1, 3])
        only = m.forward_intermediates(x, indices=2, intermediates_only=True)
        early, early_maps = m.forward_intermediates(x, indices=[1], stop_early=True)
        assert torch.equal(final, m.forward_features(x))
        all_maps = m.forward_intermediates(x, intermediates_only=True)
    assert [t.shape[1] for t in maps] == [m.feature_info[1]["num_chs"], m.feature_info[3]["num_chs"]]
    assert torch.equal(only[0], all_maps[3]) and torch.equal(only[1], all_maps[4])
    assert torch.equal(early, early_maps[0]) and torch.equal(early, all_maps[1])
    with pytest.raises(ValueError, match="output_fmt"):
        m.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(InputShapeError, match="input channels"):
        m.forward_intermediates(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("model_name", ["googlenet", "googlenet_paper", "bn_inception"])
def test_prune_intermediate_layers(model_name):
    m = create_model(model_name, num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = m.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
        kept = m.prune_intermediate_layers([1, 2])
        assert kept == [1, 2] and m.num_classes == 0 and not m.has_aux
        out = m(x)  # the pruned trunk, no pooling, no classifier
        assert torch.equal(out, want) and m.num_features == m.head_hidden_size == want.shape[1]
        assert torch.equal(m.forward_intermediates(x, indices=[2], intermediates_only=True)[0], want)
    assert isinstance(m.get_classifier(), nn.Identity)


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", ""])
def test_global_pool_in_constructor_and_reset(pool):
    m = create_model("googlenet_small", width=0.25, num_classes=0, global_pool=pool).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = m.forward_features(x)
        out = m(x)
    want = {
        "avg": feats.mean((2, 3)),
        "max": feats.amax((2, 3)),
        "avgmax": 0.5 * (feats.mean((2, 3)) + feats.amax((2, 3))),
        "": feats,
    }[pool]
    torch.testing.assert_close(out, want)
    assert m.head_hidden_size == m.num_features and m.global_pool_type == pool
    if pool:
        m.reset_classifier(4)
        assert m(x).shape == (2, 4) and m.get_classifier().out_features == 4
    else:
        with pytest.raises(ValueError, match="needs num_classes=0"):
            m.reset_classifier(4)
    m.reset_classifier(0, "max")
    with torch.no_grad():
        torch.testing.assert_close(m(x), feats.amax((2, 3)))
    with pytest.raises(ValueError, match="unknown global_pool"):
        create_model("googlenet_small", global_pool="catavgmax")
    with pytest.raises(ValueError, match="needs num_classes=0"):
        create_model("googlenet_small", num_classes=3, global_pool="")


def test_reset_classifier_keeps_device_dtype_and_mode():
    m = create_model("googlenet", num_classes=3, aux_logits=True).double().eval()
    m.reset_classifier(6, "avgmax")
    assert m.fc.weight.dtype == torch.float64 and m.aux1.fc2.weight.dtype == torch.float64
    assert not m.fc.training and not m.avgpool.training
    assert m(torch.randn(1, 3, 40, 40, dtype=torch.float64)).shape == (1, 6)
    assert m.get_classifier() is m.fc


def test_inception_resnet_v1_embedding_head():
    m = create_model("inception_resnet_v1", num_classes=0, embed_dim=64).eval()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        e = m(x)
    assert e.shape == (2, 64) == (2, m.head_hidden_size)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    m.reset_classifier(0, "")  # no pooling: the embedding (which takes pooled features) goes
    assert m.last_linear is None and m.head_hidden_size == m.num_features
    with torch.no_grad():
        assert m(x).shape == (2, 1792, 1, 1)


def test_weights_load_into_a_features_only_model(tmp_path):
    full = create_model("googlenet_small", weights="fashion_mnist").eval()
    feats = create_model("googlenet_small", weights="fashion_mnist", features_only=True).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        want = full.forward_intermediates(x, intermediates_only=True)
        got = feats(x)
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    assert feats.in_chans == 1 and feats.default_cfg["mean"] == full.default_cfg["mean"]
    assert "num_classes" not in feats.pretrained_cfg and "classifier" not in feats.pretrained_cfg
    sd = full.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in feats.state_dict().items())  # the model's own keys
    # a weights file (here torchvision's googlenet layout, from our own googlenet)
    src = create_model("googlenet", num_classes=10)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    f2 = create_model("googlenet", weights=str(path), features_only=True, feature_cls="getter")
    assert torch.equal(f2.model.inception5b.branch1.conv.weight, src.inception5b.branch1.conv.weight)


def test_timm_resolve_model_data_config():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):  # only the configs are read
        v4, v4_1000 = create_model("inception_v4", num_classes=0), create_model("inception_v4")
    for model in (v4, create_model("googlenet_small", weights="fashion_mnist", features_only=True)):
        cfg = timm.data.resolve_model_data_config(model)
        ours = model.default_cfg
        assert cfg["input_size"] == ours["input_size"] and cfg["interpolation"] == ours["interpolation"]
        assert tuple(cfg["mean"]) == tuple(ours["mean"]) and tuple(cfg["std"]) == tuple(ours["std"])
        assert cfg["crop_pct"] == ours["crop_pct"]
    assert timm.data.resolve_model_data_config(v4_1000)["mean"] == (0.5, 0.5, 0.5)


def test_scripted_features_only_model():
    m = create_model("googlenet", features_only=True, out_indices=(2, 3, 4)).eval()
    s = torch.jit.script(m)
    x = torch.randn(1, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(s(x), m(x)))


def test_fx_feature_extractor_by_module_name():
    """torchvision's create_feature_extractor picks stages by module name, as forward_intermediates."""
    m = create_model("googlenet", transform_input=True).eval()
    fe = create_feature_extractor(m, return_nodes={"inception4e": "c4", "inception5b": "c5"})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = fe(x)
        want = m.forward_intermediates(x, indices=[3, 4], intermediates_only=True)
    assert torch.equal(got["c4"], want[0]) and torch.equal(got["c5"], want[1])


def test_eager_input_errors_stay():
    m = create_model("googlenet").eval()
    with pytest.raises(InputShapeError, match="4-D"):
        m(torch.randn(3, 64, 64))
    with pytest.raises(InputShapeError, match="4-D"):
        m.forward_features(torch.randn(3, 64, 64))
    out = m(torch.randn(1, 3, 64, 64), return_aux=True)
    assert isinstance(out, inceptionnet.ModelOutput) and out.aux == ()


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing


def _step(model: nn.Module, x: torch.Tensor, aux: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # the same dropout masks in both runs
    out = model(x, return_aux=aux)
    logits = out.logits if aux else out
    loss = logits.square().mean() + (sum(a.square().mean() for a in out.aux) if aux else 0)
    loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model_name", MODELS)
def test_grad_checkpointing_same_outputs_gradients_and_bn_stats(model_name):
    model = _model(model_name).train()
    aux = model.has_aux
    side = max(model.min_input_size, model.min_aux_input_size if aux else 0, 32)
    x = torch.randn(2, 3, side, side)
    ckpt = copy.deepcopy(model)
    ckpt.set_grad_checkpointing()
    used: list[str] = []
    orig = torch.utils.checkpoint.checkpoint

    def spy(fn, *args, **kwargs):
        used.append(kwargs.get("use_reentrant"))
        return orig(fn, *args, **kwargs)

    want, want_grads = _step(model, x, aux)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.utils.checkpoint, "checkpoint", spy)
        got, got_grads = _step(ckpt, x, aux)
    assert used and set(used) == {False}  # really checkpointed, non-reentrant
    assert torch.equal(got, want)
    assert want_grads.keys() == got_grads.keys()
    for n, g in want_grads.items():
        torch.testing.assert_close(got_grads[n], g, rtol=1e-5, atol=1e-6, msg=n)
    for (n, a), b in zip(model.named_buffers(), ckpt.buffers()):
        assert torch.equal(a, b), n  # BatchNorm statistics counted once
    ckpt.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt(x), model.eval()(x))


def test_grad_checkpointing_features_only():
    m = create_model("googlenet", features_only=True).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    want = [o.detach() for o in m(x)]
    m.set_grad_checkpointing()
    out = m(x.requires_grad_())
    sum(o.sum() for o in out).backward()
    assert x.grad is not None
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, want))


# --------------------------------------------------------------------------------------------------
# Real clients: a torchvision detector and a segmentation head on our features


def _train_falls(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Any, steps: int = 3) -> None:
    """``steps`` training steps on a fixed batch: the loss is finite and falls; the model ends in eval mode."""
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    model.eval()


@pytest.mark.parametrize("name", ["googlenet", pytest.param("inception_v3", marks=pytest.mark.slow)])
def test_fasterrcnn_with_fpn_on_features_trains_and_predicts(name):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    body = create_model(name, features_only=True, out_indices=(2, 3, 4))
    info = body.feature_info
    backbone = BackboneWithFPN(
        body,
        return_layers={name: str(i) for i, name in enumerate(info.module_name())},
        in_channels_list=info.channels(),
        out_channels=32,
    )
    model = FasterRCNN(
        backbone,
        num_classes=3,
        min_size=128,
        max_size=128,
        image_mean=list(body.default_cfg["mean"]),
        image_std=list(body.default_cfg["std"]),
        rpn_anchor_generator=AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=32,
        box_detections_per_img=10,
    )
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 60.0, 120.0, 118.0]]),
            "labels": torch.tensor([1, 2]),
        },
        {
            "boxes": torch.tensor([[30.0, 20.0, 90.0, 100.0], [5.0, 90.0, 40.0, 125.0]]),
            "labels": torch.tensor([2, 1]),
        },
    ]

    def loss() -> torch.Tensor:
        torch.manual_seed(0)  # the same anchor and proposal samples each step: the fixed batch's loss
        return sum(model(images, targets).values())

    _train_falls(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), loss)
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2 and all({"boxes", "labels", "scores"} <= d.keys() for d in dets)
    assert all(d["boxes"].shape[-1] == 4 and torch.isfinite(d["boxes"]).all() for d in dets)


class _FCN16(nn.Module):
    """FCN-16s: torchvision's FCNHead on the stride-32 map plus a 1x1 score of the stride-16 map."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        from torchvision.models.segmentation.fcn import FCNHead

        super().__init__()
        self.backbone = backbone
        c16, c32 = backbone.feature_info.channels()
        self.head32 = FCNHead(c32, num_classes)
        self.score16 = nn.Conv2d(c16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f16, f32 = self.backbone(x)
        y = nn.functional.interpolate(
            self.head32(f32), size=f16.shape[-2:], mode="bilinear", align_corners=False
        )
        y = y + self.score16(f16)
        return nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_fcn_segmentation_head_on_stride_16_32_features():
    torch.manual_seed(0)
    model = _FCN16(create_model("googlenet", features_only=True, out_indices=(3, 4)), num_classes=3)
    x = torch.randn(2, 3, 96, 96)
    mask = torch.zeros(2, 96, 96, dtype=torch.long)
    mask[:, 20:70, 10:50] = 1
    mask[:, 50:90, 60:90] = 2
    _train_falls(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        lambda: nn.functional.cross_entropy(model(x), mask),
    )
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert pred.shape == mask.shape


# --------------------------------------------------------------------------------------------------
# inceptionnet embed


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("imgs")
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        arr = (torch.rand(20 + i, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        (d / "sub" if i >= 3 else d).mkdir(exist_ok=True)
        Image.fromarray(arr).save((d / "sub" if i >= 3 else d) / f"img{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _read_embeddings(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("embeddings"), f.metadata()


def test_embed_folder_pooled_features(image_dir, tmp_path, capsys):
    from inceptionnet import data as D
    from inceptionnet.cli import main as cli_main

    out = tmp_path / "emb.safetensors"
    rc = cli_main(["embed", "googlenet_small", "--weights", "fashion_mnist", str(image_dir), "-o", str(out),
                   "--batch-size", "2"])  # fmt: skip
    assert rc == 0
    vecs, meta = _read_embeddings(out)
    files = json.loads(meta["files"])
    assert [Path(f).name for f in files] == ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png"]
    assert vecs.shape == (5, 256) and meta["model"] == "googlenet_small" and meta["stage"] == "pooled"
    m = create_model("googlenet_small", weights="fashion_mnist").eval()
    icfg = D.InputConfig.from_model(m)
    t = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    x = torch.stack([t(D.read_image(f, icfg.in_chans)) for f in files])
    with torch.no_grad():
        want = m.forward_head(m.forward_features(x), pre_logits=True)
    torch.testing.assert_close(vecs, want, rtol=1e-4, atol=1e-5)
    # a stage, globally pooled; the output must not be an input
    rc = cli_main(["embed", "googlenet_small", "--weights", "fashion_mnist", str(image_dir / "img0.png"),
                   "-o", str(tmp_path / "s.safetensors"), "--stage", "2"])  # fmt: skip
    vecs2, meta2 = _read_embeddings(tmp_path / "s.safetensors")
    assert rc == 0 and vecs2.shape == (1, m.feature_info[2]["num_chs"]) and meta2["stage"] == "2"
    rc = cli_main(["embed", "googlenet_small", "--weights", "fashion_mnist", str(image_dir / "img0.png"),
                   "-o", str(image_dir / "img0.png")])  # fmt: skip
    assert rc == 2 and "input" in capsys.readouterr().err
    assert (image_dir / "img0.png").read_bytes()[:4] == b"\x89PNG"


def test_embed_checkpoint_and_face_embeddings(image_dir, tmp_path):
    from inceptionnet.commands import embed

    m = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125)
    ckpt = tmp_path / "c.pt"
    torch.save({"model": m.state_dict(), "model_name": "googlenet_small", "model_kwargs": {"width": 0.125},
                "classes": [str(i) for i in range(10)]}, ckpt)  # fmt: skip
    out = tmp_path / "c.safetensors"
    assert embed.run_embed(checkpoint=str(ckpt), inputs=[str(image_dir)], output=str(out))[0] == 5
    vecs, meta = _read_embeddings(out)
    assert vecs.shape == (5, m.num_features) and meta["model"] == "googlenet_small"
    # inception_resnet_v1 with the face weights' architecture (facenet's, the vggface2 entry's flags):
    # its L2-normalized 512-d embeddings; 7 classes, not 512: the class count is read from classif, not
    # from last_linear (the embedding)
    face = create_model("inception_resnet_v1", num_classes=7, embed_dim=512, num_blocks=(5, 10, 6),
                        slim_final_block=True)  # fmt: skip
    wfile = tmp_path / "face.pth"
    torch.save({"model": face.state_dict(), "model_name": "inception_resnet_v1",
                "model_kwargs": {"embed_dim": 512, "num_blocks": [5, 10, 6], "slim_final_block": True},
                "data_cfg": {"input_size": 80, "in_chans": 3, "mean": [0.5, 0.5, 0.5],
                             "std": [0.5, 0.5, 0.5]}}, wfile)  # fmt: skip
    out2 = tmp_path / "f.safetensors"
    assert (
        embed.run_embed(checkpoint=str(wfile), inputs=[str(image_dir / "img0.png")], output=str(out2))[0] == 1
    )
    vecs2, meta2 = _read_embeddings(out2)
    assert vecs2.shape == (1, 512) and meta2["normalized"] == "true"
    torch.testing.assert_close(vecs2.norm(dim=1), torch.ones(1))
