"""Per-layer analysis: output shapes, parameters and multiply-accumulates of every block, in forward order.

``inceptionnet summary NAME`` prints the table; ``--table1`` lays GoogLeNet out as the paper's Table 1
(with the published figures beside ours), ``--bottleneck`` shows what the 1x1 reductions of each
Inception block save. The Python API returns plain dicts (the ``--format json`` output)::

    >>> from inceptionnet.commands.summary import summarize, render
    >>> s = summarize("googlenet")                    # at the model's default input size
    >>> s["total_params"], s["total_macs"]
    (6624904, 1498376192)
    >>> print(render(s, "markdown"))

How things are counted:

* ``params``: every parameter (conv and linear weights *and* biases, BatchNorm scale and shift).
* ``weights``: conv kernels and linear matrices only (tensors with two or more dimensions), i.e. no
  biases and no norm parameters: what the paper's Table 1 calls "params".
* ``macs``: multiply-accumulates of convolutions and matrix products (linear layers), taken from
  ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs / 2), per module via its module hierarchy.
  This is the paper's "ops" (pooling, normalization, activations and bias additions not counted).

Shapes and counts come from one forward pass of a single image. Models given by name are built and
run on PyTorch's ``meta`` device (shapes only, no memory or compute), so even the largest models
are measured instantly; a model passed as a module runs where its parameters are.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import InputShapeError, first_line
from ..fileio import json_text
from ..models import create_model
from ..models.googlenet import GoogLeNet, Inception
from ..models.layers import ACT_MODULES

__all__ = [
    "FORMATS",
    "PAPER_TABLE1",
    "bottleneck",
    "bottleneck_example",
    "get_args_parser",
    "main",
    "render",
    "render_bottleneck",
    "render_table1",
    "summarize",
    "table1",
]

FORMATS = ("text", "markdown", "csv", "json")

PARAMS_NOTE = (
    "params: all parameters, biases and BatchNorm included; weights: conv kernels and linear "
    "matrices only (no biases), the paper's 'params'"
)
MACS_NOTE = (
    "MACs: multiply-accumulates of convolutions and linear layers (FlopCounterMode FLOPs / 2), "
    "the paper's 'ops'"
)

# "Going deeper with convolutions", Table 1: the published params (K = 1024 weights, no biases)
# and ops (M = 10^6 multiply-adds) per row, keyed by our module names (conv2 covers conv2 + conv3,
# the paper's "convolution 3x3/1" row with a 64-channel reduce).
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "conv1": (2.7, 34),
    "conv2": (112, 360),
    "inception3a": (159, 128),
    "inception3b": (380, 304),
    "inception4a": (364, 73),
    "inception4b": (437, 88),
    "inception4c": (463, 100),
    "inception4d": (580, 119),
    "inception4e": (840, 170),
    "inception5a": (1072, 54),
    "inception5b": (1388, 71),
    "fc": (1000, 1),
}

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Inside an expanded block these only repeat their input's shape; rows for them are noise.
_ELEMENTWISE = (*ACT_MODULES, nn.Dropout)


# ----------------------------------------------------------------------------------------------
# Measuring


@dataclass
class _Trace:
    """What one forward pass recorded for the watched modules."""

    order: list[str] = field(default_factory=list)  # first-call order
    in_shapes: dict[str, list[int]] = field(default_factory=dict)
    out_shapes: dict[str, Any] = field(default_factory=dict)
    macs: dict[str, int] = field(default_factory=dict)
    total_macs: int = 0


def _shape(x: Any) -> Any:
    """Per-sample shape of a module output (batch dimension dropped); nested for tuples."""
    if isinstance(x, Tensor):
        return list(x.shape[1:])
    if isinstance(x, tuple | list):
        return [_shape(t) for t in x if isinstance(t, Tensor | tuple | list)]
    return []


def _trace(model: nn.Module, x: Tensor, watch: dict[str, nn.Module], run: Callable[[Tensor], Any]) -> _Trace:
    tr = _Trace()
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name not in tr.out_shapes:
                tr.order.append(name)
                if args and isinstance(args[0], Tensor):
                    tr.in_shapes[name] = list(args[0].shape[1:])
            tr.out_shapes[name] = _shape(out)

        return hook

    for name, mod in watch.items():
        handles.append(mod.register_forward_hook(make_hook(name)))
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            run(x)
    finally:
        for h in handles:
            h.remove()
    # The counter names modules "<RootClass>.<fqn>" (torch.utils.module_tracker).
    counts = counter.get_flop_counts()
    root = type(model).__name__
    for name in watch:
        tr.macs[name] = sum(counts.get(f"{root}.{name}", {}).values()) // 2
    tr.total_macs = counter.get_total_flops() // 2
    return tr


def _count(module: nn.Module) -> tuple[int, int]:
    """(params, weights) of a module: all parameters, and those with >= 2 dims (no biases, no norms)."""
    params = weights = 0
    for p in module.parameters():
        params += p.numel()
        if p.dim() >= 2:
            weights += p.numel()
    return params, weights


def _top_level(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The rows of depth 1: the model's children, with plain containers (timm's ``features``) opened."""

    def walk(mod: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        for name, child in mod.named_children():
            fq = f"{prefix}{name}"
            if isinstance(child, nn.Identity):
                continue  # placeholders such as googlenet_small's maxpool1
            if type(child) in _CONTAINERS:
                yield from walk(child, fq + ".")
            else:
                yield fq, child

    return list(walk(model, ""))


def _is_unit(mod: nn.Module) -> bool:
    """A layer of depth 2: a leaf module, or a conv-norm-act group (one conv/linear, held directly).

    A block that holds a conv directly *and* branches (Inception-ResNet's 1x1 up-projection) is not one.
    """
    children = list(mod.children())
    if not children:
        return True
    direct = sum(isinstance(c, _WEIGHTED) for c in children)
    return direct == 1 and sum(isinstance(m, _WEIGHTED) for m in mod.modules()) == 1


def _units(mod: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in mod.named_children():
        fq = f"{prefix}.{name}"
        if isinstance(child, (nn.Identity, *_ELEMENTWISE)):
            continue
        if _is_unit(child):
            out.append((fq, child))
        else:
            out.extend(_units(child, fq))
    return out


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


def _first_conv(mod: nn.Module) -> nn.Conv2d | None:
    if isinstance(mod, nn.Conv2d):
        return mod
    return next((m for m in mod.children() if isinstance(m, nn.Conv2d)), None)


def _patch(mod: nn.Module) -> str:
    """Patch size / stride as in the paper's table, e.g. "7x7/2"; "" where it does not apply."""
    conv = _first_conv(mod) if _is_unit(mod) else None
    src: Any = conv if conv is not None else mod
    if isinstance(src, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kh, kw = _pair(src.kernel_size)
        sh, _ = _pair(src.stride if src.stride is not None else src.kernel_size)
        return f"{kh}x{kw}/{sh}"
    return ""


# GoogLeNet Inception block branches -> the paper's column names
_GOOGLENET_BRANCHES = {
    "branch1": "#1x1",
    "branch2.0": "#3x3 reduce",
    "branch2.1": "#3x3",
    "branch3.0": "#5x5 reduce",
    "branch3.1": "#5x5",
    "branch3.2": "#5x5 (2nd 3x3)",
    "branch4.0": "pool",
    "branch4.1": "pool proj",
}


def _describe(mod: nn.Module, label: str | None = None) -> str:
    """A short human description of a row: "conv 7x7/2", "max pool 3x3/2", "#3x3 reduce: conv 1x1/1"."""
    patch = _patch(mod)
    if isinstance(mod, nn.MaxPool2d):
        desc = f"max pool {patch}"
    elif isinstance(mod, nn.AvgPool2d):
        desc = f"avg pool {patch}"
    elif isinstance(mod, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        kind = "avg" if isinstance(mod, nn.AdaptiveAvgPool2d) else "max"
        desc = f"global {kind} pool" if _pair(mod.output_size) == (1, 1) else f"adaptive {kind} pool"
    elif isinstance(mod, nn.Dropout):
        desc = f"dropout ({mod.p:.0%})"
    elif isinstance(mod, nn.Linear):
        desc = "linear"
    elif isinstance(mod, nn.LocalResponseNorm):
        desc = "local response norm"
    elif _is_unit(mod) and _first_conv(mod) is not None:
        desc = f"conv {patch}"
    else:
        desc = type(mod).__name__
    return f"{label}: {desc}" if label else desc


def _resolve_size(model: nn.Module, input_size: Sequence[int] | None) -> tuple[int, int]:
    if input_size is None:
        cfg = getattr(model, "default_cfg", {}) or {}
        size = cfg.get("input_size", (3, 224, 224))
        return int(size[-2]), int(size[-1])
    return _check_size(input_size)


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    vals = list(input_size)
    if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in vals):
        raise ValueError(f"input size must be two positive integers H W, got {tuple(vals)!r}")
    return vals[0], vals[1]


def _build(name: str, in_chans: int, num_classes: int, aux: bool) -> nn.Module:
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    has_flag = hasattr(model, "aux_logits")
    if aux and not has_flag:
        raise ValueError(f"{name} has no auxiliary classifiers; run without --aux")
    if has_flag and bool(model.aux_logits) != aux:
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, aux_logits=aux)
    return model


def _size_error(e: RuntimeError) -> bool:
    msg = str(e).lower()
    return "too small" in msg or "kernel size can't be greater" in msg or "output size is" in msg


@dataclass
class _Measured:
    model: nn.Module
    name: str
    in_chans: int
    size: tuple[int, int]
    aux: bool
    trace: _Trace
    rows: list[tuple[str, nn.Module]]  # depth-1 rows in forward order
    units: dict[str, list[tuple[str, nn.Module]]]  # depth-2 rows per depth-1 row


def _measure(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None,
    in_chans: int,
    num_classes: int,
    aux: bool,
) -> _Measured:
    if input_size is not None:
        _check_size(input_size)
    if isinstance(model_or_name, str):
        try:
            # meta device: real shapes and counts without allocating or computing anything
            with torch.device("meta"):
                model = _build(model_or_name, in_chans, num_classes, aux)
            return _measure_module(model, model_or_name, input_size, aux)
        except (NotImplementedError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and _size_error(e):
                raise InputShapeError(f"input too small for {model_or_name}: {first_line(e)}") from e
            # an op without a meta kernel: measure on the CPU instead
        model = _build(model_or_name, in_chans, num_classes, aux)
        return _measure_module(model, model_or_name, input_size, aux)
    return _measure_module(model_or_name, type(model_or_name).__name__, input_size, aux)


def _measure_module(model: nn.Module, name: str, input_size: Sequence[int] | None, aux: bool) -> _Measured:
    size = _resolve_size(model, input_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    in_chans = int(getattr(model, "in_chans", 0) or 0)
    if not in_chans:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = conv.in_channels if conv is not None else 3
    x = torch.zeros(1, in_chans, *size, device=device, dtype=dtype)

    rows = _top_level(model)
    units = {n: _units(m, n) for n, m in rows if not _is_unit(m)}
    watch = dict(rows)
    for us in units.values():
        watch.update(us)

    def run(t: Tensor) -> Any:
        return model(t, return_aux=True) if aux else model(t)

    was_training = model.training
    model.eval()  # dropout off, BN uses running stats: shapes and counts are the same, results defined
    try:
        trace = _trace(model, x, watch, run)
    except RuntimeError as e:
        if _size_error(e):
            raise InputShapeError(f"input {size[0]}x{size[1]} is too small for {name}: {e}") from e
        raise
    finally:
        model.train(was_training)
    return _Measured(model, name, in_chans, size, aux, trace, rows, units)


def _row(m: _Measured, name: str, mod: nn.Module, depth: int, label: str | None = None) -> dict[str, Any]:
    params, weights = _count(mod)
    return {
        "name": name,
        "type": type(mod).__name__,
        "desc": _describe(mod, label),
        "depth": depth,
        "output_shape": m.trace.out_shapes.get(name, []),
        "params": params,
        "weights": weights,
        "macs": m.trace.macs.get(name, 0),
    }


def _summary_dict(m: _Measured, depth: int) -> dict[str, Any]:
    tr = m.trace
    total_params, total_weights = _count(m.model)
    executed = [(n, mod) for n, mod in m.rows if n in tr.out_shapes]
    executed.sort(key=lambda nm: tr.order.index(nm[0]))
    layers: list[dict[str, Any]] = []
    for name, mod in executed:
        layers.append(_row(m, name, mod, 1))
        if depth >= 2 and name in m.units:
            subs = [(n, u) for n, u in m.units[name] if n in tr.out_shapes]
            subs.sort(key=lambda nm: tr.order.index(nm[0]))
            # the paper's column names for the branches of GoogLeNet's blocks
            labels = _GOOGLENET_BRANCHES if isinstance(mod, Inception) else {}
            layers.extend(_row(m, n, u, 2, labels.get(n[len(name) + 1 :])) for n, u in subs)
    rest = tr.total_macs - sum(r["macs"] for r in layers if r["depth"] == 1)
    if rest:  # matmuls/convs called in the model's own forward, outside any child module
        layers.append(
            {"name": "(functional)", "type": "-", "desc": "ops outside child modules", "depth": 1,
             "output_shape": [], "params": 0, "weights": 0, "macs": rest}
        )  # fmt: skip
    not_run = [n for n, mod in m.rows if n not in tr.out_shapes and _count(mod)[0]]
    return {
        "model": m.name,
        "input_size": [m.in_chans, *m.size],
        "num_classes": int(getattr(m.model, "num_classes", 0) or 0),
        "aux": m.aux,
        "total_params": total_params,
        "total_weights": total_weights,
        "total_macs": tr.total_macs,
        "params_counting": PARAMS_NOTE,
        "macs_counting": MACS_NOTE,
        "not_run": not_run,
        "layers": layers,
    }


def summarize(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
    depth: int = 1,
    aux: bool = False,
) -> dict[str, Any]:
    """Per-layer table of a model: the ``--format json`` structure.

    ``{"model", "input_size": [C, H, W], "total_params", "total_weights", "total_macs", "layers":
    [{"name", "type", "desc", "depth", "output_shape", "params", "weights", "macs"}], ...}``.
    ``output_shape`` is per sample (no batch dimension). With ``depth=2`` each block's branches
    follow its own row (``"depth": 2``); sum only the ``depth == 1`` rows to get the totals.

    ``input_size`` is (H, W); ``None`` is the model's default (224 for GoogLeNet, 299 for v3/v4).
    A name is built with ``in_chans``/``num_classes`` and without aux heads unless ``aux=True``
    (then the aux heads are built *and* run, so they get rows and MACs). A module is measured as
    it is (``in_chans``/``num_classes`` ignored). Raises ``ValueError`` (``InputShapeError`` for an
    input the network cannot take) before any real work.
    """
    if depth not in (1, 2):
        raise ValueError(f"depth must be 1 or 2, got {depth!r}")
    return _summary_dict(_measure(model_or_name, input_size, in_chans, num_classes, aux), depth)


# ----------------------------------------------------------------------------------------------
# Paper Table 1 (GoogLeNet)


def _googlenet_parts(model: nn.Module, name: str) -> None:
    if not isinstance(model, GoogLeNet) or isinstance(model.maxpool1, nn.Identity):
        raise ValueError(
            f"--table1 is the GoogLeNet paper's Table 1: use googlenet or googlenet_paper, not {name} "
            "(the plain summary works for every model)"
        )


def _hwc(shape: Sequence[int]) -> str:
    """The paper writes sizes as H x W x C."""
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}x{shape[0]}"
    if len(shape) == 1:
        return f"1x1x{shape[0]}"
    return "x".join(str(s) for s in shape)


def table1(
    model_or_name: str | nn.Module = "googlenet_paper",
    input_size: Sequence[int] | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> dict[str, Any]:
    """GoogLeNet as the paper's Table 1: one row per table row, our counts beside the published ones.

    Row keys: ``name`` (our modules), ``type``, ``patch``, ``output_size`` (H x W x C), ``depth``,
    ``n1x1``, ``n3x3_reduce``, ``n3x3``, ``n5x5_reduce``, ``n5x5``, ``pool_proj``, ``params``
    (weights without biases, as the paper), ``params_with_bias``, ``ops`` (MACs), and where the
    paper has them ``paper_params_k`` (K = 1024) and ``paper_ops_m`` (M = 10^6).
    """
    m = _measure(model_or_name, input_size, in_chans, num_classes, aux=False)
    _googlenet_parts(m.model, m.name)
    s = _summary_dict(m, 1)
    by_name = {r["name"]: r for r in s["layers"]}
    model: Any = m.model
    paper_setup = list(s["input_size"]) == [3, 224, 224] and s["num_classes"] == 1000
    empty = dict(n1x1=None, n3x3_reduce=None, n3x3=None, n5x5_reduce=None, n5x5=None, pool_proj=None)

    def row(
        name: str, type_: str, patch: str, depth: int, names: Sequence[str] = (), **cols: Any
    ) -> dict[str, Any]:
        rs = [by_name[n] for n in (names or [name]) if n in by_name]
        out = rs[-1]["output_shape"] if rs else []
        paper = PAPER_TABLE1.get(name) if paper_setup else None
        return {
            "name": "+".join(names) if names else name,
            "type": type_,
            "patch": patch,
            "output_size": _hwc(out),
            "depth": depth,
            **{**empty, **cols},
            "params": sum(r["weights"] for r in rs),
            "params_with_bias": sum(r["params"] for r in rs),
            "ops": sum(r["macs"] for r in rs),
            "paper_params_k": paper[0] if paper else None,
            "paper_ops_m": paper[1] if paper else None,
        }

    rows: list[dict[str, Any]] = []
    for name in [r["name"] for r in s["layers"]]:
        mod = model.get_submodule(name)
        if name == "conv1":
            rows.append(row(name, "convolution", _patch(mod), 1))
        elif name == "conv2":
            rows.append(
                row("conv2", "convolution", _patch(model.conv3), 2, ("conv2", "conv3"),
                    n3x3_reduce=model.conv2.conv.out_channels, n3x3=model.conv3.conv.out_channels)
            )  # fmt: skip
        elif isinstance(mod, nn.MaxPool2d):
            rows.append(row(name, "max pool", _patch(mod), 0))
        elif isinstance(mod, Inception):
            blk: Any = mod
            b3 = list(blk.branch3)
            rows.append(
                row(name, f"inception ({name.removeprefix('inception')})", "", 2,
                    n1x1=blk.branch1.conv.out_channels, n3x3_reduce=blk.branch2[0].conv.out_channels,
                    n3x3=blk.branch2[1].conv.out_channels, n5x5_reduce=b3[0].conv.out_channels,
                    n5x5=b3[-1].conv.out_channels, pool_proj=blk.branch4[1].conv.out_channels)
            )  # fmt: skip
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            h, w = (m.trace.in_shapes.get(name) or [0, 0, 0])[1:3]
            rows.append(row(name, "avg pool", f"{h}x{w}/1", 0))
        elif isinstance(mod, nn.Dropout):
            rows.append(row(name, f"dropout ({mod.p:.0%})", "", 0))
        elif isinstance(mod, nn.Linear):
            rows.append(row(name, "linear", "", 1))
        # conv3 (merged into conv2's row) and the LRNs are not rows of the paper's table
    if "fc" in by_name:
        soft = row("fc", "softmax", "", 0)
        soft.update(
            name="softmax", params=0, params_with_bias=0, ops=0, paper_params_k=None, paper_ops_m=None
        )
        rows.append(soft)
    notes = [
        "params: weights without biases, as the paper's Table 1 (K = 1024, the paper's unit: "
        "inception (3a) 163,328 = 159.5K); params_with_bias: all parameters",
        "ops: multiply-accumulates of convolutions and the linear layer (FlopCounterMode FLOPs / 2), M = 10^6",
        "the paper's LRN layers (after maxpool1 and conv3 in googlenet_paper) have no parameters and no ops, "
        "and are not rows of its table",
    ]
    if model.inception3a.branch3[-1].conv.kernel_size != (5, 5):
        notes.append(
            "this model's '#5x5' branch is a 3x3 conv (torchvision's GoogLeNet), so its counts differ"
        )
    return {
        "model": m.name,
        "input_size": s["input_size"],
        "total_params": s["total_params"],
        "total_weights": s["total_weights"],
        "total_macs": s["total_macs"],
        "paper_figures": paper_setup,
        "notes": notes,
        "rows": rows,
    }


# ----------------------------------------------------------------------------------------------
# 1x1 bottlenecks


def _conv_macs(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(weights, MACs) of a bias-free conv stack on a meta input, MACs from FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    x = torch.empty(1, *input_shape, device="meta")
    with counter, torch.no_grad():
        module(x)
    return _count(module)[1], counter.get_total_flops() // 2


def bottleneck_example(
    in_channels: int = 256, reduced: int = 64, out_channels: int = 256, size: int = 1
) -> dict[str, Any]:
    """seeds/002's example: a 1x1 256->64, 3x3 64->64, 1x1 64->256 bottleneck vs a direct 3x3 256->256.

    Weights (no biases) 69,632 vs 589,824; at ``size=1`` MACs are per output position (the same
    numbers, as the seed counts them); multiply by H x W for a feature map.
    """
    if min(in_channels, reduced, out_channels, size) < 1:
        raise ValueError("channels and size must be positive")
    with torch.device("meta"):
        bott = nn.Sequential(
            nn.Conv2d(in_channels, reduced, 1, bias=False),
            nn.Conv2d(reduced, reduced, 3, padding=1, bias=False),
            nn.Conv2d(reduced, out_channels, 1, bias=False),
        )
        direct = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    bw, bm = _conv_macs(bott, (in_channels, size, size))
    dw, dm = _conv_macs(direct, (in_channels, size, size))
    return {
        "in_channels": in_channels,
        "reduced": reduced,
        "out_channels": out_channels,
        "size": size,
        "bottleneck": {"weights": bw, "macs": bm},
        "direct": {"weights": dw, "macs": dm},
        "ratio": dw / bw,
    }


def _bare_convs(mods: Sequence[nn.Module], in_channels: int | None = None) -> nn.Sequential:
    """The convs (and pools) of a branch without biases/norms/activations; optionally a new input width."""
    layers: list[nn.Module] = []
    for mod in mods:
        conv = _first_conv(mod)
        if conv is None:
            if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
                layers.append(mod)
            continue
        cin = in_channels if in_channels is not None and not layers else conv.in_channels
        pad = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
        layers.append(
            nn.Conv2d(cin, conv.out_channels, _pair(conv.kernel_size), stride=_pair(conv.stride), padding=pad,
                      dilation=_pair(conv.dilation), bias=False)
        )  # fmt: skip
    return nn.Sequential(*layers)


def bottleneck(
    model_or_name: str | nn.Module = "googlenet_paper",
    input_size: Sequence[int] | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> dict[str, Any]:
    """Per Inception block: weights (no biases) and MACs as built, and without the 1x1 reductions.

    "Without": the 3x3 and 5x5 convs take the block's full input (the paper's naive module, Fig. 2a)
    while the 1x1 branch and the pool projection stay, so both versions have the same output.
    Works for blocks built like GoogLeNet's ``Inception`` (branch1, branch2/3 = reduce -> conv,
    branch4 = pool -> proj); other families raise ``ValueError``.
    """
    m = _measure(model_or_name, input_size, in_chans, num_classes, aux=False)
    s = _summary_dict(m, 1)
    blocks = []
    for r in s["layers"]:
        mod = m.model.get_submodule(r["name"]) if r["name"] != "(functional)" else None
        if not isinstance(mod, Inception):
            continue
        cin, h, w = m.trace.in_shapes[r["name"]]
        with torch.device("meta"):
            built = nn.ModuleList(
                [_bare_convs([mod.branch1]), _bare_convs(list(mod.branch2)), _bare_convs(list(mod.branch3)),
                 _bare_convs(list(mod.branch4))]
            )  # fmt: skip
            naive = nn.ModuleList(
                [_bare_convs([mod.branch1]), _bare_convs(list(mod.branch2)[1:], cin),
                 _bare_convs(list(mod.branch3)[1:], cin), _bare_convs(list(mod.branch4))]
            )  # fmt: skip
        bw = bm = nw = nm = 0
        for b, n in zip(built, naive, strict=True):
            wb, mb = _conv_macs(b, (cin, h, w))
            wn, mn = _conv_macs(n, (cin, h, w))
            bw, bm, nw, nm = bw + wb, bm + mb, nw + wn, nm + mn
        blocks.append(
            {"name": r["name"], "input_shape": [cin, h, w], "output_shape": r["output_shape"],
             "weights": bw, "macs": bm, "weights_without_reduction": nw, "macs_without_reduction": nm,
             "ratio": nm / bm if bm else float("nan")}
        )  # fmt: skip
    if not blocks:
        raise ValueError(
            f"--bottleneck needs GoogLeNet-style Inception blocks (googlenet, googlenet_paper, googlenet_small); "
            f"{m.name} has none"
        )
    tot = {
        k: sum(b[k] for b in blocks)
        for k in ("weights", "macs", "weights_without_reduction", "macs_without_reduction")
    }
    return {
        "model": m.name,
        "input_size": s["input_size"],
        "blocks": blocks,
        "total": {**tot, "ratio": tot["macs_without_reduction"] / tot["macs"]},
        "example": bottleneck_example(),
        "counting": "weights: conv kernels without biases; MACs: FlopCounterMode FLOPs / 2",
    }


# ----------------------------------------------------------------------------------------------
# Rendering


def _fmt_int(v: Any) -> str:
    return "" if v is None else f"{v:,}"


def _fmt_shape(shape: Any) -> str:
    if not shape:
        return "-"
    if isinstance(shape[0], list):
        return ", ".join(_fmt_shape(s) for s in shape)
    return "x".join(str(s) for s in shape)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, right: Sequence[bool]) -> str:
    if fmt == "markdown":
        md_rows = [[c.strip().replace("|", "\\|") for c in r] for r in rows]
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" if a else "---" for a in right) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in md_rows]
        return "\n".join(lines)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([[c.strip() for c in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, right)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render(summary: dict[str, Any], fmt: str = "text") -> str:
    """The ``summarize`` dict as text (aligned), markdown, csv or json."""
    _check_format(fmt)
    if fmt == "json":
        return json_text(summary)
    headers = ["layer", "type", "output (CxHxW)", "params", "weights", "MACs"]
    rows = []
    for r in summary["layers"]:
        indent = "  " if r["depth"] == 2 and fmt == "text" else ""
        rows.append(
            [indent + r["name"], indent + r["desc"], _fmt_shape(r["output_shape"]),
             _fmt_int(r["params"]), _fmt_int(r["weights"]), _fmt_int(r["macs"])]
        )  # fmt: skip
    if fmt == "csv":
        headers = ["name", "type", "desc", "depth", "output_shape", "params", "weights", "macs"]
        rows = [
            [r["name"], r["type"], r["desc"], str(r["depth"]), _fmt_shape(r["output_shape"]),
             str(r["params"]), str(r["weights"]), str(r["macs"])]
            for r in summary["layers"]
        ]  # fmt: skip
        return _table(headers, rows, fmt, [False] * 4 + [True] * 4)
    rows.append(["total", "", "", _fmt_int(summary["total_params"]), _fmt_int(summary["total_weights"]),
                 _fmt_int(summary["total_macs"])])  # fmt: skip
    c, h, w = summary["input_size"]
    title = f"{summary['model']}: input {c}x{h}x{w}, {summary['num_classes']} classes" + (
        ", aux heads built and run" if summary["aux"] else ""
    )
    foot = [
        f"total: {summary['total_params']:,} params, {summary['total_weights']:,} weights, "
        f"{summary['total_macs'] / 1e9:.3f} GMACs",
        PARAMS_NOTE,
        MACS_NOTE,
    ]
    if summary["not_run"]:
        foot.append(
            f"built but not run by this forward pass (in the totals, not in rows): {', '.join(summary['not_run'])}"
        )
    body = _table(headers, rows, fmt, [False, False, False, True, True, True])
    if fmt == "markdown":
        return "\n".join([f"**{title}**", "", body, "", *(f"- {f}" for f in foot)])
    return "\n".join([title, "", body, "", *foot])


def render_table1(t: dict[str, Any], fmt: str = "text") -> str:
    """The ``table1`` dict laid out like the paper's Table 1."""
    _check_format(fmt)
    if fmt == "json":
        return json_text(t)
    headers = ["type", "patch size/stride", "output size", "depth", "#1x1", "#3x3 reduce", "#3x3",
               "#5x5 reduce", "#5x5", "pool proj", "params", "ops"]  # fmt: skip
    if t["paper_figures"]:
        headers += ["paper params", "paper ops"]
    if fmt == "csv":
        keys = ["name", "type", "patch", "output_size", "depth", "n1x1", "n3x3_reduce", "n3x3",
                "n5x5_reduce", "n5x5", "pool_proj", "params", "params_with_bias", "ops",
                "paper_params_k", "paper_ops_m"]  # fmt: skip
        rows = [["" if r[k] is None else str(r[k]) for k in keys] for r in t["rows"]]
        return _table(keys, rows, fmt, [False] * 4 + [True] * 12)

    def k(v: int) -> str:
        return f"{v / 1024:.1f}K" if v else ""

    def mm(v: int) -> str:
        return f"{v / 1e6:.1f}M" if v else ""

    def num(v: Any) -> str:
        return "" if v is None else str(v)

    rows = []
    for r in t["rows"]:
        cells = [r["type"], r["patch"], r["output_size"], str(r["depth"])]
        cells += [num(r[c]) for c in ("n1x1", "n3x3_reduce", "n3x3", "n5x5_reduce", "n5x5", "pool_proj")]
        cells += [k(r["params"]), mm(r["ops"])]
        if t["paper_figures"]:
            pk, pm = r["paper_params_k"], r["paper_ops_m"]
            cells += ["" if pk is None else f"{pk:g}K", "" if pm is None else f"{pm:g}M"]
        rows.append(cells)
    body = _table(headers, rows, fmt, [False, False, False] + [True] * (len(headers) - 3))
    c, h, w = t["input_size"]
    title = f"{t['model']} as the paper's Table 1: input {c}x{h}x{w}"
    foot = [
        f"total: {t['total_weights']:,} weights ({t['total_params']:,} params with biases), "
        f"{t['total_macs'] / 1e9:.3f} GMACs",
        *t["notes"],
    ]
    if t["paper_figures"]:
        foot.append(
            "paper params / ops: the published figures (Szegedy et al. 2015, Table 1); docs/TABLE1.md explains the differences"
        )
    if fmt == "markdown":
        return "\n".join([f"**{title}**", "", body, "", *(f"- {f}" for f in foot)])
    return "\n".join([title, "", body, "", *foot])


def render_bottleneck(b: dict[str, Any], fmt: str = "text") -> str:
    """The ``bottleneck`` dict: per block, as built vs without the 1x1 reductions."""
    _check_format(fmt)
    if fmt == "json":
        return json_text(b)
    keys = ["weights", "macs", "weights_without_reduction", "macs_without_reduction"]
    if fmt == "csv":
        rows = [[x["name"], _fmt_shape(x["input_shape"]), *(str(x[k]) for k in keys), f"{x['ratio']:.2f}"]
                for x in b["blocks"]]  # fmt: skip
        return _table(["name", "input_shape", *keys, "ratio"], rows, fmt, [False, False] + [True] * 5)
    headers = ["block", "input (CxHxW)", "weights", "MACs", "weights w/o 1x1", "MACs w/o 1x1", "ratio"]
    rows = [[x["name"], _fmt_shape(x["input_shape"]), *(_fmt_int(x[k]) for k in keys), f"{x['ratio']:.2f}x"]
            for x in b["blocks"]]  # fmt: skip
    tot = b["total"]
    rows.append(["total", "", *(_fmt_int(tot[k]) for k in keys), f"{tot['ratio']:.2f}x"])
    ex = b["example"]
    c, h, w = b["input_size"]
    title = (
        f"{b['model']}: the 1x1 reductions of each Inception block, input {c}x{h}x{w} "
        "(w/o 1x1: the 3x3 and 5x5 convs take the block's full input; 1x1 branch and pool proj kept)"
    )
    foot = [
        b["counting"],
        f"seeds/002 example: 1x1 {ex['in_channels']}->{ex['reduced']}, 3x3 {ex['reduced']}->{ex['reduced']}, "
        f"1x1 {ex['reduced']}->{ex['out_channels']} = {ex['bottleneck']['weights']:,} weights vs a direct 3x3 "
        f"{ex['in_channels']}->{ex['out_channels']} = {ex['direct']['weights']:,} "
        f"({ex['ratio']:.2f}x; the same numbers are the MACs per output position)",
    ]
    body = _table(headers, rows, fmt, [False, False] + [True] * 5)
    if fmt == "markdown":
        return "\n".join([f"**{title}**", "", body, "", *(f"- {f}" for f in foot)])
    return "\n".join([title, "", body, "", *foot])


# ----------------------------------------------------------------------------------------------
# Command line


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Per-layer table of a model: output shapes, parameters and MACs in forward order.",
        add_help=add_help,
    )
    p.add_argument("model", metavar="NAME", help="a registered model (see 'inceptionnet list')")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input height and width (default: the model's, e.g. 224 or 299)")  # fmt: skip
    p.add_argument("--in-chans", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--depth", type=int, choices=(1, 2), default=1,
                   help="1: one row per block; 2: also each block's branches")  # fmt: skip
    p.add_argument("--aux", action="store_true", help="build and run the auxiliary classifiers too")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--table1", action="store_true",
                      help="GoogLeNet as the paper's Table 1, with the published figures beside ours")  # fmt: skip
    mode.add_argument("--bottleneck", action="store_true",
                      help="per Inception block: weights and MACs with and without the 1x1 reductions")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(args: argparse.Namespace) -> int:
    if not args.model.strip():
        raise ValueError("the model NAME is empty; see 'inceptionnet list'")
    if args.in_chans < 1:
        raise ValueError(f"bad --in-chans: in_chans must be a positive integer, got {args.in_chans}")
    if args.num_classes < 0:
        raise ValueError(
            f"bad --num-classes: num_classes must be a non-negative integer, got {args.num_classes}"
        )
    size = tuple(args.input_size) if args.input_size is not None else None
    if args.table1 or args.bottleneck:
        if args.aux or args.depth != 1:
            raise ValueError("--aux and --depth apply to the plain summary, not to --table1/--bottleneck")
        if args.table1:
            _emit(render_table1(table1(args.model, size, args.in_chans, args.num_classes), args.format))
        else:
            b = bottleneck(args.model, size, args.in_chans, args.num_classes)
            _emit(render_bottleneck(b, args.format))
        return 0
    s = summarize(args.model, size, args.in_chans, args.num_classes, depth=args.depth, aux=args.aux)
    _emit(render(s, args.format))
    return 0


def _emit(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # the reader stopped early (``| head``): not an error; keep Python's exit-time flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
