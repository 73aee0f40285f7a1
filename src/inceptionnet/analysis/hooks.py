"""Capture what modules output during one forward pass, leaving the model as it was.

``capture_outputs(model, x, modules)`` runs ``model(x)`` once (no autograd) with a forward hook on
each of ``modules`` and returns each one's output, detached; every hook is removed afterwards, also
when the forward fails. Used by the feature-map grids (``analysis.feature_maps``) and the branch
view of ``inceptionnet explain`` / the serve page (``serve.explain.branch_energy``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["capture_outputs"]

K = TypeVar("K", bound=Hashable)


def capture_outputs(model: nn.Module, x: Tensor, modules: Mapping[K, nn.Module]) -> dict[K, Tensor]:
    """``{key: the output of modules[key]}`` (detached; the last call's where a module runs more
    than once) for one ``model(x)`` under ``torch.no_grad``. A module whose output is not a tensor
    (a tuple, a dict) or that did not run is absent from the result."""
    acts: dict[K, Tensor] = {}

    def keep(key: K) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                acts[key] = out.detach()

        return hook

    handles = [m.register_forward_hook(keep(k)) for k, m in modules.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return acts
