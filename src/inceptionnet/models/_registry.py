"""A small explicit model registry (a leaf: it imports no model): ``@register_model`` on builder functions.

The families register themselves when ``inceptionnet.models`` is imported; ``_builder.create_model``
builds by name."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from ..errors import UsageError

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
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (available: {', '.join(list_models())})"


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str):
        raise UsageError(
            f"the model name must be a string such as 'googlenet', got {name!r} ({type(name).__name__}); "
            f"available: {', '.join(list_models())}"
        )
    if name not in _MODELS:
        raise UsageError(unknown_model_message(name))
    return _MODELS[name]


# YAML 1.1 (PyYAML) reads 5e-1 and 1e3 as strings: it wants a dot and a signed exponent (5.0e-1)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number_or_value(v: Any) -> Any:
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v) if any(c in v for c in ".eE") else int(v)
    if isinstance(v, list):
        return [_number_or_value(x) for x in v]
    return v


def parse_model_kwargs(items: Sequence[str] | dict[str, Any]) -> dict[str, Any]:
    """``--model-kwargs KEY=VALUE ...`` (values parsed as YAML; numbers such as ``5e-1`` as numbers)
    or a recipe's mapping -> constructor kwargs."""
    import yaml

    if isinstance(items, dict):
        return {str(k): _number_or_value(v) for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--model-kwargs expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise UsageError(f"--model-kwargs expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(v)  # numbers, bools, lists
        except yaml.YAMLError:
            raise UsageError(f"--model-kwargs {item!r}: the value is not valid YAML") from None
        out[k.strip()] = _number_or_value(value)
    return out
