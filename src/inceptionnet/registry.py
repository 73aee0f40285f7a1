"""A small explicit model registry: ``@register_model`` on builder functions, ``create_model`` by name."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from .layers import InceptionBase

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a builder ``fn(**kwargs) -> nn.Module`` under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern`` (e.g. ``"inception*"``)."""
    _import_models()
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (available: {', '.join(list_models())})"


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    _import_models()
    if name not in _MODELS:
        raise ValueError(unknown_model_message(name))
    return _MODELS[name]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | None = None,
    **kwargs: Any,
) -> InceptionBase:
    """Build a registered model; ``weights`` is a weight entry name (see ``weights.py``) or a local file.

    ``num_classes`` and ``in_chans`` default to the weight entry's (e.g. 10 classes and 1 channel for
    ``googlenet_small`` ``weights="fashion_mnist"``), else to 1000 and 3. With ``weights``, the model
    is built with the entry's architecture flags; a different ``num_classes`` re-initializes the
    classifier (with a warning) and ``in_chans`` different from the weights' sums or repeats the
    first conv over input channels.
    """
    builder = get_model_builder(name)
    if weights is not None and (num_classes is None or in_chans is None):
        from .weights import get_weight_entry

        entry = get_weight_entry(name, weights)
        if entry is not None:
            num_classes = entry.num_classes if num_classes is None else num_classes
            in_chans = entry.input_size[0] if in_chans is None else in_chans
    num_classes = 1000 if num_classes is None else num_classes
    in_chans = 3 if in_chans is None else in_chans
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    if weights is None:
        model = builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
        assert isinstance(model, InceptionBase)
        return model
    from .weights import build_with_weights

    return build_with_weights(name, builder, weights, num_classes=num_classes, in_chans=in_chans, **kwargs)


def parse_model_kwargs(items: Sequence[str] | dict[str, Any]) -> dict[str, Any]:
    """``--model-kwargs KEY=VALUE ...`` (values parsed as YAML) or a recipe's mapping -> constructor kwargs."""
    import yaml

    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--model-kwargs expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)  # numbers, bools, lists
    return out


def _import_models() -> None:
    # Importing the model modules runs their @register_model decorators.
    from . import models  # noqa: F401
