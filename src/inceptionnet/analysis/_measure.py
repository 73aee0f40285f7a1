"""Measuring a model: its rows (top-level blocks, and their layers), one traced forward pass (output
shapes, MACs per module from ``FlopCounterMode``), parameter counts and short descriptions.

Models given by name are built and run on PyTorch's ``meta`` device (shapes only, no memory or
compute); a model passed as a module runs where its parameters are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import InputShapeError, UsageError, first_line
from ..models import create_model
from ..models.layers import ACT_MODULES

__all__ = ["Measured", "count", "describe", "first_conv", "is_unit", "measure", "pair", "patch"]

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Inside an expanded block these only repeat their input's shape; rows for them are noise.
_ELEMENTWISE = (*ACT_MODULES, nn.Dropout)


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


def count(module: nn.Module) -> tuple[int, int]:
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


def is_unit(mod: nn.Module) -> bool:
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
        if is_unit(child):
            out.append((fq, child))
        else:
            out.extend(_units(child, fq))
    return out


def pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


def first_conv(mod: nn.Module) -> nn.Conv2d | None:
    if isinstance(mod, nn.Conv2d):
        return mod
    return next((m for m in mod.children() if isinstance(m, nn.Conv2d)), None)


def patch(mod: nn.Module) -> str:
    """Patch size / stride as in the paper's table, e.g. "7x7/2"; "" where it does not apply."""
    conv = first_conv(mod) if is_unit(mod) else None
    src: Any = conv if conv is not None else mod
    if isinstance(src, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kh, kw = pair(src.kernel_size)
        sh, _ = pair(src.stride if src.stride is not None else src.kernel_size)
        return f"{kh}x{kw}/{sh}"
    return ""


def describe(mod: nn.Module, label: str | None = None) -> str:
    """A short human description of a row: "conv 7x7/2", "max pool 3x3/2", "#3x3 reduce: conv 1x1/1"."""
    ps = patch(mod)
    if isinstance(mod, nn.MaxPool2d):
        desc = f"max pool {ps}"
    elif isinstance(mod, nn.AvgPool2d):
        desc = f"avg pool {ps}"
    elif isinstance(mod, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        kind = "avg" if isinstance(mod, nn.AdaptiveAvgPool2d) else "max"
        desc = f"global {kind} pool" if pair(mod.output_size) == (1, 1) else f"adaptive {kind} pool"
    elif isinstance(mod, nn.Dropout):
        desc = f"dropout ({mod.p:.0%})"
    elif isinstance(mod, nn.Linear):
        desc = "linear"
    elif isinstance(mod, nn.LocalResponseNorm):
        desc = "local response norm"
    elif is_unit(mod) and first_conv(mod) is not None:
        desc = f"conv {ps}"
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
        raise UsageError(f"input size must be two positive integers H W, got {tuple(vals)!r}")
    return vals[0], vals[1]


def _build(name: str, in_chans: int, num_classes: int, aux: bool) -> nn.Module:
    model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    has_flag = hasattr(model, "aux_logits")
    if aux and not has_flag:
        raise UsageError(f"{name} has no auxiliary classifiers; run without --aux")
    if has_flag and bool(model.aux_logits) != aux:
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, aux_logits=aux)
    return model


def _size_error(e: RuntimeError) -> bool:
    msg = str(e).lower()
    return "too small" in msg or "kernel size can't be greater" in msg or "output size is" in msg


@dataclass
class Measured:
    """A model, its rows and what one forward pass recorded for them."""

    model: nn.Module
    name: str
    in_chans: int
    size: tuple[int, int]
    aux: bool
    trace: _Trace
    rows: list[tuple[str, nn.Module]]  # depth-1 rows in forward order
    units: dict[str, list[tuple[str, nn.Module]]]  # depth-2 rows per depth-1 row


def measure(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None,
    in_chans: int,
    num_classes: int,
    aux: bool,
) -> Measured:
    """Build (a name, on the meta device) and run a model once, recording every row and layer."""
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


def _measure_module(model: nn.Module, name: str, input_size: Sequence[int] | None, aux: bool) -> Measured:
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
    units = {n: _units(m, n) for n, m in rows if not is_unit(m)}
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
    return Measured(model, name, in_chans, size, aux, trace, rows, units)
