"""FX, then TorchScript (issue 31 item 5): timm's ``test_model_forward_fx_torchscript`` and
``test_model_backward_fx`` bodies (timm 1.0.x ``tests/test_models.py``) on every registered model,
with timm's own ``_create_fx_model``: torchvision's feature-extraction tracer given timm's no-trace
modules and functions and ``param_shapes_constant=True``.

Adapted: our registry and ``create_model``; each model built once (``num_classes=42``, what timm's
backward test uses) and deep-copied; timm's two tests run as one test per model on one trace (the
train=True extractor holds both graphs); inputs at the model's ``min_input_size`` (what timm's
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
OPTIMIZED = "googlenet_small"  # the one model run through the optimizing TorchScript executor


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


def _executed(scripted: torch.jit.ScriptModule, name: str, x: Tensor) -> Tensor:
    """``scripted(x)``: through the optimizing executor for one model (the path is the same for all),
    through the TorchScript interpreter without its optimization passes for the others (the same
    compiled graph; the passes took seconds per big model on a first call)."""
    with torch.jit.optimized_execution(name == OPTIMIZED):
        return torch.cat(tuple(scripted(x).values()))


@pytest.mark.parametrize("model_name", MODELS)
def test_model_forward_fx_torchscript_and_backward_fx(model_name):
    """timm's ``test_model_forward_fx_torchscript`` (batch 1: trace, script, one forward; plus: the
    scripted graph gives the eager logits) and ``test_model_backward_fx`` (batch 2: one backward pass
    through the traced GraphModule; the aux heads of a model that has them are not in the traced
    logits path), on one trace: ``_create_fx_model(train=True)`` holds the eval graph that
    ``_create_fx_model(train=False)`` builds (the same return node) and the train graph."""
    model, input_size = _model(model_name)
    model.train()
    num_params = sum(x.numel() for x in model.parameters())
    num_aux = _aux_numel(model)
    fx_model = _create_fx_model(model, train=True)

    # forward, FX then TorchScript, batch 1
    model.eval()
    fx_model.eval()
    inputs = torch.randn((1, *input_size))
    scripted = torch.jit.script(fx_model)
    with torch.inference_mode():
        outputs = _executed(scripted, model_name, inputs)
        eager = model(inputs)

    assert outputs.shape[0] == 1
    assert not torch.isnan(outputs).any(), "Output included NaNs"
    torch.testing.assert_close(outputs, eager, rtol=1e-4, atol=1e-5)

    # backward through the traced train graph, batch 2
    fx_model.train()
    outputs = torch.cat(tuple(fx_model(torch.randn((2, *input_size))).values()))
    outputs.mean().backward()
    for n, x in fx_model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum(x.grad.numel() for x in fx_model.parameters() if x.grad is not None)

    assert outputs.shape[-1] == NUM_CLASSES
    assert num_params - num_aux == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("feature_cls", ["list", "dict"])
def test_features_only_fx_then_script(feature_cls):
    """The feature extractors' forwards are traced as roots too: FX then script works on them."""
    model = create_model("googlenet_small", features_only=True, feature_cls=feature_cls).eval()
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    x = torch.randn(1, 3, 32, 32)
    want, got = model(x), scripted(x)
    if feature_cls == "dict":
        want, got = list(want.values()), list(got.values())
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(want, got))
