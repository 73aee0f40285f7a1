"""Feature maps of chosen layers for one image, each layer's channels tiled into one grid picture.

``feature_maps(model, x, layers)`` runs the model once with forward hooks on the named trunk
modules (the model is not modified) and returns, per layer, its channels (C x H x W, each channel
min-max scaled to [0, 1] on its own, so a weak channel is as visible as a strong one; a constant
channel is 0) and the grid of them (``torchvision.utils.make_grid``, one tile per channel).
``feature_map_figure`` draws the grids, one panel per layer (``inceptionnet explain --feature-maps``).

The layer names are the backbone API's: ``model.layer_names``, the trunk modules in forward order
(stems, pools, every Inception block; ``feature_info``'s stage ends are among them). A model
without that declaration offers its top-level children.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import NonFiniteError, UsageError, excerpt
from .hooks import capture_outputs

__all__ = [
    "LayerMaps",
    "feature_layer_names",
    "feature_map_figure",
    "feature_maps",
    "parse_layers",
    "tile_grid",
]


@dataclass
class LayerMaps:
    layer: str
    maps: np.ndarray  # C x H x W float32, each channel scaled to [0, 1]
    grid: np.ndarray  # the C tiles as one gray picture (rows x cols tiles, 1-px gaps), in [0, 1]
    nrow: int  # tiles per grid row


def feature_layer_names(model: nn.Module) -> list[str]:
    """The names ``feature_maps`` accepts: the declared trunk modules (``layer_names``) in forward order."""
    names = getattr(model, "layer_names", None)
    if names:
        return list(names)
    return [n for n, _ in model.named_children()]


def parse_layers(spec: str, model: nn.Module, flag: str = "--feature-maps") -> list[str]:
    """``LAYER[,LAYER...]`` checked against the model's layer names (repeats dropped); one line on error."""
    valid = feature_layer_names(model)
    layers: list[str] = []
    for part in spec.split(","):
        name = part.strip()
        if not name:
            raise UsageError(
                f"{flag} {excerpt(spec)}: an empty layer name; give names such as {', '.join(valid[:3])}"
            )
        if name not in valid:
            raise UsageError(
                f"{flag}: {excerpt(name)} is not a layer of this model; choose from {', '.join(valid)}"
            )
        if name not in layers:
            layers.append(name)
    return layers


def _per_channel_scaled(a: Tensor, layer: str) -> Tensor:
    """C x H x W -> each channel (a - min) / (max - min); a constant channel 0; NaN/inf an error."""
    if not bool(torch.isfinite(a).all()):
        raise NonFiniteError(
            f"the feature maps of {layer} are not finite (NaN/inf): the model's activations overflow"
        )
    flat = a.reshape(a.shape[0], -1)
    lo = flat.min(1).values.view(-1, 1, 1)
    span = flat.max(1).values.view(-1, 1, 1) - lo
    return torch.where(span > 0, (a - lo) / span.clamp_min(1e-12), torch.zeros_like(a))


def tile_grid(maps: Tensor, pad: int = 1) -> tuple[np.ndarray, int]:
    """C x H x W in [0, 1] -> (the channels as one near-square grid picture, tiles per row); the gaps
    between tiles are white, so a black tile reads as a silent channel."""
    from torchvision.utils import make_grid

    nrow = max(1, math.ceil(math.sqrt(maps.shape[0])))
    grid = make_grid(maps.unsqueeze(1), nrow=nrow, padding=pad, pad_value=1.0)
    return grid[0].numpy(), nrow  # make_grid repeats one channel to three: keep one


def feature_maps(model: nn.Module, x: Tensor, layers: Sequence[str]) -> list[LayerMaps]:
    """The feature maps of ``layers`` (names from ``feature_layer_names``) for one input ``x``
    (1 x C x H x W, preprocessed as the model expects), in the order given."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise UsageError(
            f"feature_maps takes one image as a 1 x C x H x W tensor, got shape {tuple(x.shape)}"
        )
    valid = feature_layer_names(model)
    unknown = [n for n in layers if n not in valid]
    if unknown:
        raise UsageError(
            f"{excerpt(unknown[0])} is not a layer of this model; choose from {', '.join(valid)}"
        )
    acts = capture_outputs(model, x, {n: model.get_submodule(n) for n in layers})
    out = []
    for name in layers:
        a = acts.get(name)
        if a is None or a.dim() != 4:
            raise UsageError(f"layer {name} gives no N x C x H x W feature map; choose a stage or block")
        scaled = _per_channel_scaled(a[0].float().cpu(), name)
        grid, nrow = tile_grid(scaled)
        out.append(LayerMaps(name, scaled.numpy(), grid, nrow))
    return out


def feature_map_figure(results: Sequence[LayerMaps], title: str = "") -> Any:
    """A matplotlib figure: one panel per layer, its channel grid with the layer's shape as the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 5.4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        c, h, w = r.maps.shape
        ax.imshow(r.grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{r.layer}: {c} channels, {h}x{w}", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95) if title else None)  # the suptitle above the panel titles
    return fig
