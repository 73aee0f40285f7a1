"""Per-layer analysis: output shapes, parameters and multiply-accumulates of every block, in forward order.

The Python API returns plain dicts (the ``--format json`` output of ``inceptionnet summary``)::

    >>> from inceptionnet.analysis import summarize, render
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
are measured instantly; a model passed as a module runs where its parameters are. The layers of a
block whose family declares them (``ANALYSIS_HINTS``, see ``analysis.hints``) carry the paper's
column names ("#3x3 reduce: conv 1x1/1"); nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import UsageError
from ..fileio import json_text
from ._measure import Measured, count, describe, measure
from ._text import check_format, document, fmt_int, fmt_shape, table
from .hints import block_columns

__all__ = ["MACS_NOTE", "PARAMS_NOTE", "render", "summarize", "summary_of"]

PARAMS_NOTE = (
    "params: all parameters, biases and BatchNorm included; weights: conv kernels and linear "
    "matrices only (no biases), the paper's 'params'"
)
MACS_NOTE = (
    "MACs: multiply-accumulates of convolutions and linear layers (FlopCounterMode FLOPs / 2), "
    "the paper's 'ops'"
)


def _row(m: Measured, name: str, mod: nn.Module, depth: int, label: str | None = None) -> dict[str, Any]:
    params, weights = count(mod)
    return {
        "name": name,
        "type": type(mod).__name__,
        "desc": describe(mod, label),
        "depth": depth,
        "output_shape": m.trace.out_shapes.get(name, []),
        "params": params,
        "weights": weights,
        "macs": m.trace.macs.get(name, 0),
    }


def summary_of(m: Measured, depth: int) -> dict[str, Any]:
    """The ``summarize`` dict of a measured model (Table 1 and the bottleneck view start from it)."""
    tr = m.trace
    total_params, total_weights = count(m.model)
    executed = [(n, mod) for n, mod in m.rows if n in tr.out_shapes]
    executed.sort(key=lambda nm: tr.order.index(nm[0]))
    layers: list[dict[str, Any]] = []
    for name, mod in executed:
        layers.append(_row(m, name, mod, 1))
        if depth >= 2 and name in m.units:
            subs = [(n, u) for n, u in m.units[name] if n in tr.out_shapes]
            subs.sort(key=lambda nm: tr.order.index(nm[0]))
            labels = block_columns(mod)  # the paper's column names, where the family declares them
            layers.extend(_row(m, n, u, 2, labels.get(n[len(name) + 1 :])) for n, u in subs)
    rest = tr.total_macs - sum(r["macs"] for r in layers if r["depth"] == 1)
    if rest:  # matmuls/convs called in the model's own forward, outside any child module
        layers.append(
            {"name": "(functional)", "type": "-", "desc": "ops outside child modules", "depth": 1,
             "output_shape": [], "params": 0, "weights": 0, "macs": rest}
        )  # fmt: skip
    not_run = [n for n, mod in m.rows if n not in tr.out_shapes and count(mod)[0]]
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
    it is (``in_chans``/``num_classes`` ignored). Raises ``UsageError`` (``InputShapeError`` for an
    input the network cannot take) before any real work.
    """
    if depth not in (1, 2):
        raise UsageError(f"depth must be 1 or 2, got {depth!r}")
    return summary_of(measure(model_or_name, input_size, in_chans, num_classes, aux), depth)


def render(summary: dict[str, Any], fmt: str = "text") -> str:
    """The ``summarize`` dict as text (aligned), markdown, csv or json."""
    check_format(fmt)
    if fmt == "json":
        return json_text(summary)
    headers = ["layer", "type", "output (CxHxW)", "params", "weights", "MACs"]
    rows = []
    for r in summary["layers"]:
        indent = "  " if r["depth"] == 2 and fmt == "text" else ""
        rows.append(
            [indent + r["name"], indent + r["desc"], fmt_shape(r["output_shape"]),
             fmt_int(r["params"]), fmt_int(r["weights"]), fmt_int(r["macs"])]
        )  # fmt: skip
    if fmt == "csv":
        headers = ["name", "type", "desc", "depth", "output_shape", "params", "weights", "macs"]
        rows = [
            [r["name"], r["type"], r["desc"], str(r["depth"]), fmt_shape(r["output_shape"]),
             str(r["params"]), str(r["weights"]), str(r["macs"])]
            for r in summary["layers"]
        ]  # fmt: skip
        return table(headers, rows, fmt, [False] * 4 + [True] * 4)
    rows.append(["total", "", "", fmt_int(summary["total_params"]), fmt_int(summary["total_weights"]),
                 fmt_int(summary["total_macs"])])  # fmt: skip
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
    return document(title, table(headers, rows, fmt, [False, False, False, True, True, True]), foot, fmt)
