"""FX, then TorchScript (issue 31 item 5): timm's ``test_model_forward_fx_torchscript`` and
``test_model_backward_fx`` bodies (timm 1.0.x ``tests/test_models.py``) on every registered model,
with timm's own ``_create_fx_model``: torchvision's feature-extraction tracer given timm's no-trace
modules and functions and ``param_shapes_constant=True``.

Adapted: our registry and ``create_model``; each model built once (``num_classes=42``, what timm's
backward test uses) and deep-copied per test; inputs at the model's ``min_input_size`` (what timm's
``_get_input_size`` gives with a small target). The one documented difference (as in
test_backbone.py): the traced ``forward`` is the logits path, so ``googlenet_paper``'s aux heads get
no gradient there (they run only with ``model(x, return_aux=True)``)."""

import copy
import functools
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.feature_extraction import (
    NodePathTracer,
    create_feature_extractor,
    get_graph_node_names,
)

from helpers import model_params
from inceptionnet import create_model
from inceptionnet.models.layers import InceptionBase

timm_fx = pytest.importorskip("timm.models._features_fx")

MODELS = model_params()
# TorchScript is the legacy path under test here (torch says so on every script call)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
NUM_CLASSES = 42


@pytest.fixture(scope="module", autouse=True)
def _timm_jit_executor() -> Iterator[None]:
    """timm's test module switches TorchScript to the profiling executor without the profiling
    runs ("legacy executor is too slow to compile large models for unit tests"); restored after."""
    executor = torch._C._jit_set_profiling_executor(True)
    mode = torch._C._jit_set_profiling_mode(False)
    yield
    torch._C._jit_set_profiling_executor(executor)
    torch._C._jit_set_profiling_mode(mode)


@functools.cache
def _pristine(name: str) -> nn.Module:
    return create_model(name, num_classes=NUM_CLASSES)


def _model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """A fresh copy of ``name`` and its smallest input size (C, H, W)."""
    model = copy.deepcopy(_pristine(name))
    return model, tuple(model.default_cfg["min_input_size"])


def _create_fx_model(model: nn.Module, train: bool = False) -> nn.Module:
    """timm's ``_create_fx_model``: the node(s) feeding the traced output become the return nodes."""
    tracer_kwargs = dict(
        leaf_modules=timm_fx.get_notrace_modules(),
        autowrap_functions=timm_fx.get_notrace_functions(),
        param_shapes_constant=True,
    )
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)

    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes]
        graph_node_names = [n.name for n in graph_nodes]
        output_node_indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in output_node_indices]

    return create_feature_extractor(
        model,
        train_return_nodes=train_return_nodes,
        eval_return_nodes=eval_return_nodes,
        tracer_kwargs=tracer_kwargs,
    )


def _aux_numel(model: nn.Module) -> int:
    """Parameters of the aux heads that forward builds but runs only with ``return_aux=True``."""
    heads = model.default_cfg.get("aux_modules", ()) if getattr(model, "has_aux", False) else ()
    return sum(p.numel() for n, p in model.named_parameters() if n.split(".", 1)[0] in heads)


def test_traced_forward_annotations_are_types():
    """FX copies the root forward's annotations into the code it generates; postponed (string)
    annotations became the unknown TorchScript type ``_Tensor_`` there."""
    assert InceptionBase.forward.__annotations__ == {"x": Tensor, "return_aux": bool, "return": Tensor}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_fx_torchscript(model_name, batch_size):
    """Symbolically trace each model, script it, and run single forward pass (timm's body; plus:
    the scripted graph gives the eager logits)."""
    model, input_size = _model(model_name)
    model.eval()
    inputs = torch.randn((batch_size, *input_size))

    scripted = torch.jit.script(_create_fx_model(model))
    with torch.inference_mode():
        outputs = torch.cat(tuple(scripted(inputs).values()))
        eager = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"
    torch.testing.assert_close(outputs, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [2])
def test_model_backward_fx(model_name, batch_size):
    """Symbolically trace each model and run single backward pass through the resulting GraphModule
    (timm's body; the aux heads of a model that has them are not in the traced logits path)."""
    model, input_size = _model(model_name)
    model.train()
    num_params = sum(x.numel() for x in model.parameters())
    num_aux = _aux_numel(model)

    model = _create_fx_model(model, train=True)
    outputs = torch.cat(tuple(model(torch.randn((batch_size, *input_size))).values()))
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum(x.grad.numel() for x in model.parameters() if x.grad is not None)

    assert outputs.shape[-1] == NUM_CLASSES
    assert num_params - num_aux == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("feature_cls", ["list", "dict"])
def test_features_only_fx_then_script(feature_cls):
    """The feature extractors' forwards are traced as roots too: FX then script works on them."""
    model = create_model("googlenet_small", features_only=True, feature_cls=feature_cls).eval()
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    x = torch.randn(1, 3, 64, 64)
    want, got = model(x), scripted(x)
    if feature_cls == "dict":
        want, got = list(want.values()), list(got.values())
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(want, got))
