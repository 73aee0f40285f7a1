"""What the model families declare for the analysis: their ``ANALYSIS_HINTS``, plain data beside the
family in ``models/<family>.py`` (the models import nothing from here).

``ANALYSIS_HINTS = {"family": ..., "blocks": {BlockClass: {layer path: paper column}}, "table1": {...}}``:
``blocks`` names the layers of a family's multi-branch blocks as its paper's table does (the rows of
``summary --depth 2``, the columns of Table 1, and the ``... reduce`` layers that ``--bottleneck``
removes); ``table1`` lays a model out as its paper's Table 1 (the keys are read in ``analysis.table1``).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from torch import nn

from ..models import get_model_builder, list_models

__all__ = ["block_columns", "declaring", "family_hints", "find_layer", "hints_named"]


def _hints(module: ModuleType | None) -> dict[str, Any]:
    hints = getattr(module, "ANALYSIS_HINTS", None)
    return hints if isinstance(hints, dict) else {}


def _families() -> list[tuple[ModuleType, list[str]]]:
    """Each module that registers models, with its model names (by first name)."""
    out: dict[str, tuple[ModuleType, list[str]]] = {}
    for name in list_models():
        module = sys.modules[get_model_builder(name).__module__]
        out.setdefault(module.__name__, (module, []))[1].append(name)
    return list(out.values())


def family_hints(obj: object) -> dict[str, Any]:
    """The ``ANALYSIS_HINTS`` of the module that defines ``obj``'s class (a model or a block); {} if none."""
    return _hints(sys.modules.get(type(obj).__module__))


def hints_named(name: str) -> dict[str, Any]:
    """The hints of the family that registers the model ``name`` or defines a class ``name`` (a module
    passed to the analysis is named by its class); {} if none."""
    for module, names in _families():
        if name in names or isinstance(getattr(module, name, None), type):
            return _hints(module)
    return {}


def declaring(key: str) -> list[tuple[dict[str, Any], list[str]]]:
    """``(hints, registered model names)`` of every family whose hints declare ``key``."""
    return [(_hints(module), names) for module, names in _families() if key in _hints(module)]


def block_columns(block: nn.Module) -> dict[str, str]:
    """``{layer path: the paper's column}`` of a block whose family declares it; {} otherwise."""
    return dict(family_hints(block).get("blocks", {}).get(type(block), {}))


def find_layer(block: nn.Module, path: str) -> nn.Module | None:
    """``block.get_submodule(path)``, or None where this variant of the block has no such layer."""
    try:
        return block.get_submodule(path)
    except AttributeError:
        return None
