"""A small explicit model registry (a leaf: it imports no model): ``@register_model`` on builder functions.

The families register themselves when ``inceptionnet.models`` is imported; ``_builder.create_model``
builds by name."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import numbers
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from torch import nn

from ..errors import UsageError, excerpt, load_yaml

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
    close = difflib.get_close_matches(name[:100], list(_MODELS), n=3, cutoff=0.4)  # [:100]: quadratic
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {excerpt(name)}{hint} (available: {', '.join(list_models())})"


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str):
        raise UsageError(
            f"the model name must be a string such as 'googlenet', got {excerpt(name)} ({type(name).__name__}); "
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
    if isinstance(items, dict):
        return {str(k): _number_or_value(v) for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--model-kwargs expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise UsageError(f"--model-kwargs expects KEY=VALUE, got {item!r}")
        value = load_yaml(v, f"--model-kwargs {excerpt(item)}")  # numbers, bools, lists; no aliases
        out[k.strip()] = _number_or_value(value)
    return out


# --------------------------------------------------------------------------------------------------
# Argument types of the public model API: a wrong type is one UsageError naming the argument, not a
# TypeError from deep inside torch (or, for a bool, a truthy string taken as True)

_TYPE_WORDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits a simple annotation: bool, int, float, str, a ``X | None`` union of
    them, or a fixed-length ``tuple[...]`` (a list or tuple of that many fitting elements)."""
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is tuple and args and Ellipsis not in args:
        return isinstance(value, list | tuple) and len(value) == len(args) and all(map(_type_ok, value, args))
    return True  # an annotation this check does not model (a callable, a module): not checked here


def _type_words(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_words(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} values ({', '.join(_type_words(a) for a in args)})"
    return _TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_arg(where: str, name: str, value: Any, annotation: Any) -> None:
    """``UsageError`` naming ``where`` (the function or flag set) and ``name`` when ``value`` does
    not fit ``annotation`` (bool, int, float, str, ``X | None``, ``tuple[...]``)."""
    if not _type_ok(value, annotation):
        raise UsageError(
            f"{where}: {name} must be {_type_words(annotation)}, got {excerpt(value)} ({type(value).__name__})"
        )


def builder_flags(name: str) -> dict[str, Any] | None:
    """The flags model ``name`` is built with: parameter name -> annotation, read from the model
    class its builder returns (the builders pass their kwargs on to it); None where a class takes
    ``**kwargs`` (any name then reaches the class itself)."""
    builder = get_model_builder(name)
    cls = typing.get_type_hints(builder).get("return")
    if not isinstance(cls, type):
        return None
    init = next(c.__dict__["__init__"] for c in cls.__mro__ if "__init__" in c.__dict__)
    params = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    hints = typing.get_type_hints(init)
    return {p: hints.get(p, Any) for p in list(params)[1:]}


def check_builder_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Builder flags (``create_model(name, **kwargs)``, ``--model-kwargs``, a checkpoint's
    ``model_kwargs``) refused before building: a name the model does not take (with the ones it
    does), a value of the wrong type (``aux_logits="yes"``, ``stem_stride="2"``)."""
    flags = builder_flags(name)
    if flags is None:
        return
    for key, value in kwargs.items():
        if key not in flags:
            close = difflib.get_close_matches(str(key)[:100], list(flags), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"model {name} has no flag {excerpt(key)}{hint} (its flags: {', '.join(flags)})")
        check_arg(f"model {name}", key, value, flags[key])
