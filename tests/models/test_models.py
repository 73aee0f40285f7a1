"""Every registered model: forward/backward at its smallest valid input, API conventions, errors."""

import copy
import functools

import pytest
import torch

import inceptionnet
from inceptionnet import InputShapeError, ModelOutput, create_model, list_models

MODELS = list_models()


def smallest(model: torch.nn.Module) -> int:
    return max(model.min_input_size, model.min_aux_input_size)


def test_registry_lists_models_sorted_and_filters():
    assert sorted(MODELS) == MODELS
    assert {"googlenet", "googlenet_paper", "googlenet_small"} <= set(MODELS)
    assert list_models("googlenet_s*") == ["googlenet_small"]
    assert list_models("nothing*") == []


def test_unknown_model_lists_closest_names():
    with pytest.raises(ValueError, match=r"unknown model 'googlenett'.*did you mean googlenet"):
        create_model("googlenett")


@functools.cache
def _pristine(name: str, num_classes: int) -> torch.nn.Module:
    return create_model(name, num_classes=num_classes, in_chans=3).eval()


def _shared(name: str, num_classes: int = 5) -> torch.nn.Module:
    """``create_model(name, num_classes=..., in_chans=3)`` in eval mode, built once per model for this
    file and shared: READ ONLY (a test that changes it deep-copies it)."""
    return _pristine(name, num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_smallest_input(name):
    """The plain forward at the smallest input (``min_input_size``), the aux outputs and the
    backward at the smallest input with the aux heads (``min_aux_input_size``, larger for some)."""
    kwargs = {"aux_logits": True} if "aux_logits" in _params(name) else {}
    m = create_model(name, num_classes=7, in_chans=3, **kwargs)
    h = smallest(m)
    x = torch.randn(2, 3, h, h)
    x_plain = torch.randn(2, 3, m.min_input_size, m.min_input_size)
    m.train()
    out = m(x_plain)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    res = m(x, return_aux=True)
    assert isinstance(res, ModelOutput)
    assert res.logits.shape == (2, 7)
    assert all(a.shape == (2, 7) for a in res.aux)
    if kwargs:
        assert len(res.aux) >= 1
    loss = res.logits.sum() + sum(a.sum() for a in res.aux)
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    m.eval()
    with torch.no_grad():
        out = m(x_plain)
        assert isinstance(out, torch.Tensor) and torch.isfinite(out).all()
        res = m(x, return_aux=True)
        assert isinstance(res, ModelOutput) and res.logits.shape == (2, 7)


@pytest.mark.parametrize("name", MODELS)
def test_timm_style_api(name):
    m = copy.deepcopy(_shared(name)).eval()  # reset_classifier changes it
    h = smallest(m)
    x = torch.randn(1, 3, h, h)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.dim() == 4 and feats.shape[1] == m.num_features
        torch.testing.assert_close(m.forward_head(feats), m(x))
        assert m.forward_head(feats, pre_logits=True).shape == (1, m.num_features)
    m.reset_classifier(3)
    assert m(x).shape == (1, 3)
    m.reset_classifier(0)
    assert m(x).shape == (1, m.num_features)
    cfg = m.default_cfg
    assert cfg is m.pretrained_cfg
    for key in (
        "input_size",
        "mean",
        "std",
        "interpolation",
        "crop_pct",
        "num_classes",
        "first_conv",
        "classifier",
    ):
        assert key in cfg


@pytest.mark.parametrize("name", MODELS)
def test_input_errors_before_compute(name):
    m = _shared(name).eval()
    h = smallest(m)
    with pytest.raises(InputShapeError, match="expected 3 input channels, got 1"):
        m(torch.randn(1, 1, h, h))
    with pytest.raises(InputShapeError, match="4-D"):
        m(torch.randn(3, h, h))
    with pytest.raises(
        InputShapeError, match=rf"too small.*minimum is {m.min_input_size}x{m.min_input_size}"
    ):
        m(torch.randn(1, 3, m.min_input_size - 1, m.min_input_size - 1))
    assert issubclass(InputShapeError, ValueError)


@pytest.mark.parametrize("name", MODELS)
def test_in_chans_one(name):
    m = create_model(name, num_classes=3, in_chans=1).eval()
    h = smallest(m)
    with torch.no_grad():
        assert m(torch.randn(2, 1, h, h)).shape == (2, 3)


@functools.cache
def _params(name: str) -> set[str]:
    import inspect

    with torch.device("meta"):  # only the class is needed: no weights to initialize (collection time)
        m = create_model(name, num_classes=2)
    return set(inspect.signature(type(m).__init__).parameters)


def test_public_api_exports():
    assert inceptionnet.__version__
    for sym in ("create_model", "list_models", "ModelOutput", "InceptionNetError"):
        assert hasattr(inceptionnet, sym)


def _configs() -> list[tuple[str, bool]]:
    return [(n, aux) for n in MODELS for aux in (False, True) if not aux or "aux_logits" in _params(n)]


@pytest.mark.parametrize(("name", "aux"), _configs())
def test_declared_min_input_size_is_exact(name, aux):
    """On the meta device (shapes only, no compute): the declared minimum works, one pixel less
    is refused with our error, and the network itself could not have taken it (the check bypassed)."""
    with torch.device("meta"):
        m = create_model(name, num_classes=5, **({"aux_logits": True} if aux else {})).eval()
    h = m.min_aux_input_size if aux else m.min_input_size
    assert h > 1
    out = m(torch.empty(1, 3, h, h, device="meta"), return_aux=aux)
    logits = out.logits if aux else out
    assert logits.shape == (1, 5)
    small = torch.empty(1, 3, h - 1, h - 1, device="meta")
    with pytest.raises(InputShapeError, match=f"minimum is {h}x{h}"):
        m(small, return_aux=aux)
    with pytest.raises(RuntimeError):
        feats, aux_out = m._features(small, aux)
        m.forward_head(feats)
