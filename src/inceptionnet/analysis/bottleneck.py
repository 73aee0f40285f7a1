"""What the 1x1 reductions of each multi-branch block save: weights and MACs as built, and without them.

Generic over the declared branches: a block whose family names its layers (``ANALYSIS_HINTS["blocks"]``
in ``models/<family>.py``) is measured once as built and once with its ``... reduce`` layers removed,
the next conv of that branch taking the block's full input (the paper's naive module, Fig. 2a).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UsageError
from ..fileio import json_text
from ._measure import count, first_conv, measure, pair
from ._text import check_format, document, fmt_int, fmt_shape, table
from .hints import block_columns, declaring
from .summary import summary_of

__all__ = ["bottleneck", "bottleneck_example", "render_bottleneck"]


def _conv_macs(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(weights, MACs) of a bias-free conv stack on a meta input, MACs from FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    x = torch.empty(1, *input_shape, device="meta")
    with counter, torch.no_grad():
        module(x)
    return count(module)[1], counter.get_total_flops() // 2


def bottleneck_example(
    in_channels: int = 256, reduced: int = 64, out_channels: int = 256, size: int = 1
) -> dict[str, Any]:
    """seeds/002's example: a 1x1 256->64, 3x3 64->64, 1x1 64->256 bottleneck vs a direct 3x3 256->256.

    Weights (no biases) 69,632 vs 589,824; at ``size=1`` MACs are per output position (the same
    numbers, as the seed counts them); multiply by H x W for a feature map.
    """
    if min(in_channels, reduced, out_channels, size) < 1:
        raise UsageError("channels and size must be positive")
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
        conv = first_conv(mod)
        if conv is None:
            if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
                layers.append(mod)
            continue
        cin = in_channels if in_channels is not None and not layers else conv.in_channels
        pad = conv.padding if isinstance(conv.padding, str) else pair(conv.padding)
        layers.append(
            nn.Conv2d(cin, conv.out_channels, pair(conv.kernel_size), stride=pair(conv.stride), padding=pad,
                      dilation=pair(conv.dilation), bias=False)
        )  # fmt: skip
    return nn.Sequential(*layers)


def _branches(block: nn.Module, in_channels: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The block's branches (its children) as bare convs: as built, and without the ``... reduce`` layers."""
    columns = block_columns(block)
    built, naive = [], []
    for name, branch in block.named_children():
        parts = (
            branch.named_children() if isinstance(branch, nn.Sequential | nn.ModuleList) else [("", branch)]
        )
        layers = [(f"{name}.{p}" if p else name, layer) for p, layer in parts]
        kept = [layer for path, layer in layers if not columns.get(path, "").endswith(" reduce")]
        built.append(_bare_convs([layer for _, layer in layers]))
        naive.append(_bare_convs(kept, in_channels if len(kept) < len(layers) else None))
    return nn.ModuleList(built), nn.ModuleList(naive)


def _block(block: nn.Module, row: dict[str, Any], in_shape: list[int]) -> dict[str, Any]:
    cin, h, w = in_shape
    with torch.device("meta"):
        built, naive = _branches(block, cin)
    bw = bm = nw = nm = 0
    for b, n in zip(built, naive, strict=True):
        wb, mb = _conv_macs(b, (cin, h, w))
        wn, mn = _conv_macs(n, (cin, h, w))
        bw, bm, nw, nm = bw + wb, bm + mb, nw + wn, nm + mn
    return {"name": row["name"], "input_shape": [cin, h, w], "output_shape": row["output_shape"],
            "weights": bw, "macs": bm, "weights_without_reduction": nw, "macs_without_reduction": nm,
            "ratio": nm / bm if bm else float("nan")}  # fmt: skip


def bottleneck(
    model_or_name: str | nn.Module = "googlenet_paper",
    input_size: Sequence[int] | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> dict[str, Any]:
    """Per multi-branch block: weights (no biases) and MACs as built, and without the 1x1 reductions.

    "Without": the 3x3 and 5x5 convs take the block's full input (the paper's naive module, Fig. 2a)
    while the 1x1 branch and the pool projection stay, so both versions have the same output.
    Works for blocks whose family declares their layers (``ANALYSIS_HINTS["blocks"]``: GoogLeNet's
    ``Inception``); a model without any raises ``UsageError``.
    """
    m = measure(model_or_name, input_size, in_chans, num_classes, aux=False)
    s = summary_of(m, 1)
    blocks = []
    for r in s["layers"]:
        mod = m.model.get_submodule(r["name"]) if r["name"] != "(functional)" else None
        if mod is not None and block_columns(mod):
            blocks.append(_block(mod, r, m.trace.in_shapes[r["name"]]))
    if not blocks:
        kinds = "; ".join(
            f"{h['family']}-style Inception blocks ({', '.join(names)})" for h, names in declaring("blocks")
        )
        raise UsageError(f"--bottleneck needs {kinds or 'declared Inception blocks'}; {m.name} has none")
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


def render_bottleneck(b: dict[str, Any], fmt: str = "text") -> str:
    """The ``bottleneck`` dict: per block, as built vs without the 1x1 reductions."""
    check_format(fmt)
    if fmt == "json":
        return json_text(b)
    keys = ["weights", "macs", "weights_without_reduction", "macs_without_reduction"]
    if fmt == "csv":
        rows = [[x["name"], fmt_shape(x["input_shape"]), *(str(x[k]) for k in keys), f"{x['ratio']:.2f}"]
                for x in b["blocks"]]  # fmt: skip
        return table(["name", "input_shape", *keys, "ratio"], rows, fmt, [False, False] + [True] * 5)
    headers = ["block", "input (CxHxW)", "weights", "MACs", "weights w/o 1x1", "MACs w/o 1x1", "ratio"]
    rows = [[x["name"], fmt_shape(x["input_shape"]), *(fmt_int(x[k]) for k in keys), f"{x['ratio']:.2f}x"]
            for x in b["blocks"]]  # fmt: skip
    tot = b["total"]
    rows.append(["total", "", *(fmt_int(tot[k]) for k in keys), f"{tot['ratio']:.2f}x"])
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
    return document(title, table(headers, rows, fmt, [False, False] + [True] * 5), foot, fmt)
