"""What the network sees in one image: Grad-CAM of a class, and, for the GoogLeNet family, how much
each of the four branches of an Inception block fires where.

* Grad-CAM: captum's ``LayerGradCam`` on the last feature stage (``model.feature_info[-1]``: the
  last Inception block), ReLU'd and upsampled to the input (``LayerAttribution.interpolate``).
* Branch energy: forward hooks on ``branch1..branch4`` of the chosen ``googlenet.Inception`` block
  (the model is not modified); each branch's map is the mean over its channels of the squared
  activation, upsampled to the input and scaled to its own maximum (where it fires); its share is
  its part of the block's total squared activation (how much it fires).

``explain(...) -> Explanation`` gives arrays; ``overlay`` (+ ``png_bytes``) and ``explanation_figure`` draw them
(the server's page and ``inceptionnet explain``). ``layer_grid``: a layer's feature-map grid
(``analysis.feature_maps``) for the page's "Feature maps" view.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data as D
from ..analysis.feature_maps import LayerMaps, feature_layer_names, feature_maps
from ..analysis.hooks import capture_outputs
from ..errors import NonFiniteError, UsageError

# hooks and autograd state live on the module: one explanation at a time per process
_LOCK = threading.Lock()


@dataclass
class Explanation:
    image: np.ndarray  # H x W x 3 in [0, 1]: the model's input as a picture (what the network sees)
    probs: np.ndarray  # the class probabilities
    target: int  # the class Grad-CAM explains
    cam: np.ndarray  # H x W in [0, 1]
    cam_layer: str
    block: str | None = None
    branch_labels: list[str] = field(default_factory=list)
    branch_maps: np.ndarray | None = None  # 4 x H x W, each in [0, 1]
    branch_shares: list[float] = field(default_factory=list)


def four_branch_blocks(model: nn.Module | None) -> list[str]:
    """Names of the model's GoogLeNet Inception blocks (empty for the other families)."""
    from ..models.googlenet import Inception

    if model is None:
        return []
    return [name for name, m in model.named_modules() if isinstance(m, Inception)]


def default_block(blocks: list[str]) -> str | None:
    """inception4c (the middle of the network: neither edges nor class parts) when the model has it."""
    if "inception4c" in blocks:
        return "inception4c"
    return blocks[len(blocks) // 2] if blocks else None


def branch_label(branch: nn.Module) -> str:
    """``1x1``, ``1x1 > 3x3 > 3x3``, ``pool 3x3 > 1x1``: the layers of a branch, in order."""
    parts = []
    for m in branch.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size
            parts.append(f"{k[0]}x{k[1]}")
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
            side = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            parts.append(f"{'max' if isinstance(m, nn.MaxPool2d) else 'avg'}pool {side}x{side}")
    return " > ".join(parts)


def input_picture(x: Tensor, icfg: D.InputConfig) -> np.ndarray:
    """The normalized model input ``x`` (C x H x W) back as an H x W x 3 picture in [0, 1]."""
    mean = torch.tensor(icfg.mean).view(-1, 1, 1)
    std = torch.tensor(icfg.std).view(-1, 1, 1)
    img = x.detach().float().cpu() * std + mean
    if icfg.input_range[1] > 1.0:
        img = img / 255.0
    if icfg.input_space == "BGR":
        img = img.flip(0)
    if img.shape[0] != 3:
        img = img[:1].expand(3, -1, -1)
    return img.clamp(0, 1).permute(1, 2, 0).numpy()


def _scaled(a: Tensor) -> np.ndarray:
    """``a`` / its maximum (all zeros stays zeros); NaN/inf is an error."""
    if not bool(torch.isfinite(a).all()):
        raise NonFiniteError("the explanation is not finite (NaN/inf): the model's activations overflow")
    top = float(a.max())
    return (a / top if top > 0 else torch.zeros_like(a)).cpu().numpy()


def gradcam(model: nn.Module, x: Tensor, target: int, layer: str) -> np.ndarray:
    """Grad-CAM of class ``target`` for one input ``x`` (1 x C x H x W) at ``layer``: H x W in [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    with torch.enable_grad():
        attr = LayerGradCam(model, model.get_submodule(layer)).attribute(
            x.requires_grad_(True), target=target, relu_attributions=True
        )
    up = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return _scaled(up[0, 0].float())


def branch_energy(model: nn.Module, x: Tensor, block: str) -> tuple[list[str], np.ndarray, list[float]]:
    """(labels, 4 x H x W maps, shares) of the four branches of Inception block ``block`` on ``x``."""
    if block not in four_branch_blocks(model):
        blocks = four_branch_blocks(model)
        have = f"one of {', '.join(blocks)}" if blocks else "none: this model has no four-branch blocks"
        raise UsageError(f"--block {block!r} is not an Inception block of this model ({have})")
    mod = model.get_submodule(block)
    branches = [mod.get_submodule(f"branch{i}") for i in range(1, 5)]
    acts = capture_outputs(model, x, dict(enumerate(branches)))
    energy = [acts[i].float().pow(2) for i in range(4)]
    total = sum(float(e.sum()) for e in energy)
    shares = [float(e.sum()) / total if total > 0 else 0.0 for e in energy]
    maps = [F.interpolate(e.mean(1, keepdim=True), size=tuple(x.shape[-2:]), mode="bilinear") for e in energy]
    return [branch_label(b) for b in branches], np.stack([_scaled(m[0, 0]) for m in maps]), shares


def explain(
    model: nn.Module, icfg: D.InputConfig, x: Tensor, *, target: int | None = None, block: str | None = None
) -> Explanation:
    """Grad-CAM of ``target`` (default: the top-1 class) and, when ``block`` is given, its branch
    energies, for one model input ``x`` (C x H x W, as ``Engine.decode`` gives it)."""
    num_classes = int(getattr(model, "num_classes", 0))
    if target is not None and not 0 <= target < num_classes:
        raise UsageError(f"class index {target} is out of range: the model has {num_classes} classes")
    xb = batch_of_one(model, x)
    layer = str(model.feature_info[-1]["module"])  # type: ignore[index]
    with _LOCK:
        model.eval()
        with torch.no_grad():
            logits = model(xb).float()
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteError(
                "the model's output is not finite (NaN/inf): its weights or the input overflow"
            )
        probs = logits.softmax(1)[0].cpu()
        target = int(probs.argmax()) if target is None else target
        out = Explanation(
            input_picture(x, icfg), probs.numpy(), target, gradcam(model, xb.clone(), target, layer), layer
        )
        if block is not None:
            out.block = block
            out.branch_labels, out.branch_maps, out.branch_shares = branch_energy(model, xb, block)
    return out


def batch_of_one(model: nn.Module, x: Tensor) -> Tensor:
    """One model input (C x H x W) as a 1 x C x H x W float batch on the model's device."""
    param = next(model.parameters(), None)
    return x.unsqueeze(0).float().to(param.device if param is not None else "cpu")


def layer_grid(model: nn.Module, x: Tensor, layer: str) -> LayerMaps:
    """The feature-map grid of ``layer`` (``analysis.feature_maps``) for one model input ``x``
    (C x H x W, as ``Engine.decode`` gives it); one at a time with the explanations (hooks)."""
    with _LOCK:
        model.eval()
        return feature_maps(model, batch_of_one(model, x), [layer])[0]


def default_layer(model: nn.Module) -> str | None:
    """The layer the page shows first: the branch view's default block, else the middle layer."""
    names = feature_layer_names(model)
    block = default_block(four_branch_blocks(model))
    if block in names:
        return block
    return names[len(names) // 2] if names else None


def overlay(image: np.ndarray, heat: np.ndarray, side: int = 224, alpha: float = 0.5) -> np.ndarray:
    """``heat`` (H x W in [0, 1]) in the jet colormap over ``image`` (H x W x 3), upscaled so the
    shorter side is at least ``side`` pixels (a 28 px input stays visible): uint8 H' x W' x 3."""
    from matplotlib import colormaps
    from PIL import Image

    h, w = heat.shape
    scale = max(1, -(-side // min(h, w)))
    size = (w * scale, h * scale)
    pic = Image.fromarray((image * 255).round().astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    hm = Image.fromarray((heat * 255).round().astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    colored = colormaps["jet"](np.asarray(hm) / 255.0)[..., :3]
    mixed = (1 - alpha) * np.asarray(pic) / 255.0 + alpha * colored
    return (mixed.clip(0, 1) * 255).round().astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def explanation_figure(e: Explanation, classes: list[str], topk: int = 5) -> Any:
    """A matplotlib Figure: the input, Grad-CAM, the top-k bars; below, the four branch energies."""
    from matplotlib.figure import Figure

    layout: list[Any] = [["input", "cam", "bars", "bars"]]
    if e.branch_maps is not None:
        layout.append(["b0", "b1", "b2", "b3"])
    fig = Figure(figsize=(12, 3.4 * len(layout)), layout="constrained")
    ax = fig.subplot_mosaic(layout)
    ax["input"].imshow(e.image)
    ax["input"].set_title("input (as the network sees it)", fontsize=9)
    ax["cam"].imshow(overlay(e.image, e.cam))
    ax["cam"].set_title(f"Grad-CAM: {classes[e.target]} ({e.cam_layer})", fontsize=9)
    order = np.argsort(-e.probs)[: min(topk, len(classes))]
    ys = np.arange(len(order))[::-1]
    ax["bars"].barh(ys, e.probs[order], color="#3b7dd8")
    ax["bars"].set_yticks(ys, [classes[i] for i in order], fontsize=8)
    ax["bars"].set_xlim(0, 1)
    ax["bars"].set_title(f"top-{len(order)} probabilities", fontsize=9)
    for name in ("input", "cam"):
        ax[name].axis("off")
    if e.branch_maps is not None:
        for i in range(4):
            ax[f"b{i}"].imshow(overlay(e.image, e.branch_maps[i]))
            ax[f"b{i}"].set_title(
                f"{e.block} branch{i + 1}: {e.branch_labels[i]}\n{100 * e.branch_shares[i]:.0f}% of the energy",
                fontsize=8,
            )
            ax[f"b{i}"].axis("off")
    return fig
