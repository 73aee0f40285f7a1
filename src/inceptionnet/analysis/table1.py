"""A model laid out as its paper's Table 1: one row per table row, our counts beside the published ones.

Nothing here knows a family: the family declares what its table needs in ``ANALYSIS_HINTS["table1"]``
(``models/<family>.py``), and its blocks' layer columns in ``ANALYSIS_HINTS["blocks"]``:

* ``models``: the registered models the table is for (named in the error for any other model);
  ``requires``: top-level modules a model must have (e.g. the stem pools) to be the paper's network;
* ``figures``: the published ``(K params, M ops)`` per row, keyed by our module names;
  ``figures_setup``: ``([C, H, W], classes)`` they are for; ``figures_note``: where they come from;
* ``merged``: ``{row: {module: column}}``, one paper row for several top-level modules;
* ``block_type`` / ``block_depth``: a block's row reads "<block_type> (<name without it>)";
* ``unit_example`` (the params note's worked example), ``notes``, and ``kernel_notes``: a note for
  a column whose layer has another kernel than the column names ("#5x5" built as a 3x3).

Other rows follow the paper's vocabulary: convolution, max pool, avg pool, dropout, linear, and a
softmax after the classifier (``default_cfg["classifier"]``); modules without a row (LRN) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import UsageError
from ..fileio import json_text
from ._measure import Measured, first_conv, is_unit, measure, patch
from ._text import check_format, document, table
from .hints import block_columns, declaring, family_hints, find_layer, hints_named
from .summary import summary_of

__all__ = ["COLUMNS", "render_table1", "table1"]

# the paper's per-branch columns: row key -> header
COLUMNS = {
    "n1x1": "#1x1",
    "n3x3_reduce": "#3x3 reduce",
    "n3x3": "#3x3",
    "n5x5_reduce": "#5x5 reduce",
    "n5x5": "#5x5",
    "pool_proj": "pool proj",
}
_KEY = {header: key for key, header in COLUMNS.items()}
OPS_NOTE = (
    "ops: multiply-accumulates of convolutions and the linear layer (FlopCounterMode FLOPs / 2), M = 10^6"
)


def _spec(m: Measured) -> dict[str, Any]:
    """The model's Table 1 declaration; a UsageError naming the models that have one otherwise."""
    spec = family_hints(m.model).get("table1")
    present = {name for name, _ in m.rows}
    if spec is not None and all(name in present for name in spec.get("requires", ())):
        return dict(spec)
    tables = [
        f"the {h['family']} paper's Table 1: use {' or '.join(h['table1']['models'])}"
        for h, _ in declaring("table1")
    ]
    raise UsageError(
        f"--table1 is {'; '.join(tables) or 'not declared by any family'}, not {m.name} "
        "(the plain summary works for every model)"
    )


def _hwc(shape: Sequence[int]) -> str:
    """The paper writes sizes as H x W x C."""
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}x{shape[0]}"
    if len(shape) == 1:
        return f"1x1x{shape[0]}"
    return "x".join(str(s) for s in shape)


def _columns(root: nn.Module, labels: dict[str, str]) -> dict[str, int]:
    """The paper's columns (output channels) of the labelled layers under ``root``."""
    cols: dict[str, int] = {}
    for path, label in labels.items():
        layer = find_layer(root, path)
        conv = first_conv(layer) if layer is not None else None
        if label in _KEY and conv is not None:
            cols.setdefault(_KEY[label], conv.out_channels)
    return cols


def _kernel_notes(blocks: Sequence[nn.Module], spec: dict[str, Any]) -> list[str]:
    """The declared note of each column whose layer's kernel is not the one the column names."""
    notes: list[str] = []
    for block in blocks:
        for path, label in block_columns(block).items():
            layer = find_layer(block, path)
            conv = first_conv(layer) if layer is not None else None
            kernel = re.fullmatch(r"#(\d+x\d+)", label)
            note = spec.get("kernel_notes", {}).get(label)
            if note and kernel and conv is not None and "x".join(map(str, conv.kernel_size)) != kernel[1]:
                notes += [] if note in notes else [note]
    return notes


def _kind(m: Measured, spec: dict[str, Any], name: str, mod: nn.Module) -> tuple[str, str, int] | None:
    """(type, patch size/stride, depth) of a top-level module's row; None: not a row of the table."""
    if block_columns(mod):
        kind = spec["block_type"]
        return f"{kind} ({name.removeprefix(kind)})", "", spec["block_depth"]
    if isinstance(mod, nn.MaxPool2d):
        return "max pool", patch(mod), 0
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        h, w = (m.trace.in_shapes.get(name) or [0, 0, 0])[1:3]
        return "avg pool", f"{h}x{w}/1", 0
    if isinstance(mod, nn.Dropout):
        return f"dropout ({mod.p:.0%})", "", 0
    if isinstance(mod, nn.Linear):
        return "linear", "", 1
    if is_unit(mod) and first_conv(mod) is not None:
        return "convolution", patch(mod), 1
    return None  # e.g. the LRN layers: no parameters, no ops, no row in the paper


def _paper_row(
    by_name: dict[str, dict[str, Any]],
    figures: dict[str, tuple[float, float]] | None,
    key: str,
    kind: tuple[str, str, int],
    cols: dict[str, int],
    names: Sequence[str] = (),
) -> dict[str, Any]:
    """One row of the table over the summary rows ``names`` (default: ``key``), published figures of ``key``."""
    rs = [by_name[n] for n in (names or [key]) if n in by_name]
    paper = figures.get(key) if figures else None
    return {
        "name": "+".join(names) if names else key,
        "type": kind[0],
        "patch": kind[1],
        "output_size": _hwc(rs[-1]["output_shape"] if rs else []),
        "depth": kind[2],
        **{k: cols.get(k) for k in COLUMNS},
        "params": sum(r["weights"] for r in rs),
        "params_with_bias": sum(r["params"] for r in rs),
        "ops": sum(r["macs"] for r in rs),
        "paper_params_k": paper[0] if paper else None,
        "paper_ops_m": paper[1] if paper else None,
    }


def _rows(
    m: Measured, spec: dict[str, Any], by_name: dict[str, dict[str, Any]], figures: Any
) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, str]] = spec.get("merged", {})
    inside = {n for group in merged.values() for n in group}
    rows: list[dict[str, Any]] = []
    for name in by_name:
        if name in merged:
            group = merged[name]
            kind = ("convolution", patch(m.model.get_submodule(list(group)[-1])), len(group))
            rows.append(_paper_row(by_name, figures, name, kind, _columns(m.model, group), tuple(group)))
        elif name not in inside and (mod := find_layer(m.model, name)) is not None:
            kind_of = _kind(m, spec, name, mod)
            if kind_of is not None:
                rows.append(_paper_row(by_name, figures, name, kind_of, _columns(mod, block_columns(mod))))
    classifier = (getattr(m.model, "default_cfg", None) or {}).get("classifier")
    if classifier in by_name:  # the paper's last row
        soft = _paper_row(by_name, None, classifier, ("softmax", "", 0), {})
        soft.update(name="softmax", params=0, params_with_bias=0, ops=0)
        rows.append(soft)
    return rows


def table1(
    model_or_name: str | nn.Module = "googlenet_paper",
    input_size: Sequence[int] | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
) -> dict[str, Any]:
    """A model as its paper's Table 1: one row per table row, our counts beside the published ones.

    Row keys: ``name`` (our modules), ``type``, ``patch``, ``output_size`` (H x W x C), ``depth``,
    ``n1x1``, ``n3x3_reduce``, ``n3x3``, ``n5x5_reduce``, ``n5x5``, ``pool_proj``, ``params``
    (weights without biases, as the paper), ``params_with_bias``, ``ops`` (MACs), and where the
    paper has them ``paper_params_k`` (K = 1024) and ``paper_ops_m`` (M = 10^6). A model whose
    family declares no Table 1 raises ``UsageError``.
    """
    m = measure(model_or_name, input_size, in_chans, num_classes, aux=False)
    spec = _spec(m)
    s = summary_of(m, 1)
    by_name = {r["name"]: r for r in s["layers"]}
    setup, classes = spec["figures_setup"]
    figures = (
        spec["figures"] if list(s["input_size"]) == list(setup) and s["num_classes"] == classes else None
    )
    blocks = [mod for n in by_name if (mod := find_layer(m.model, n)) is not None and block_columns(mod)]
    notes = [
        "params: weights without biases, as the paper's Table 1 (K = 1024, the paper's unit: "
        f"{spec['unit_example']}); params_with_bias: all parameters",
        OPS_NOTE,
        *spec.get("notes", ()),
        *_kernel_notes(blocks, spec),
    ]
    return {
        "model": m.name,
        "input_size": s["input_size"],
        "total_params": s["total_params"],
        "total_weights": s["total_weights"],
        "total_macs": s["total_macs"],
        "paper_figures": figures is not None,
        "notes": notes,
        "rows": _rows(m, spec, by_name, figures),
    }


def _cells(r: dict[str, Any], with_figures: bool) -> list[str]:
    """One row of the text / markdown table."""

    def num(v: Any) -> str:
        return "" if v is None else str(v)

    cells = [r["type"], r["patch"], r["output_size"], str(r["depth"])]
    cells += [num(r[c]) for c in COLUMNS]
    cells += [
        f"{r['params'] / 1024:.1f}K" if r["params"] else "",
        f"{r['ops'] / 1e6:.1f}M" if r["ops"] else "",
    ]
    if with_figures:
        pk, pm = r["paper_params_k"], r["paper_ops_m"]
        cells += ["" if pk is None else f"{pk:g}K", "" if pm is None else f"{pm:g}M"]
    return cells


def render_table1(t: dict[str, Any], fmt: str = "text") -> str:
    """The ``table1`` dict laid out like the paper's Table 1."""
    check_format(fmt)
    if fmt == "json":
        return json_text(t)
    if fmt == "csv":
        keys = ["name", "type", "patch", "output_size", "depth", *COLUMNS, "params", "params_with_bias", "ops",
                "paper_params_k", "paper_ops_m"]  # fmt: skip
        rows = [["" if r[k] is None else str(r[k]) for k in keys] for r in t["rows"]]
        return table(keys, rows, fmt, [False] * 4 + [True] * 12)
    headers = ["type", "patch size/stride", "output size", "depth", *COLUMNS.values(), "params", "ops"]
    if t["paper_figures"]:
        headers += ["paper params", "paper ops"]
    rows = [_cells(r, t["paper_figures"]) for r in t["rows"]]
    body = table(headers, rows, fmt, [False, False, False] + [True] * (len(headers) - 3))
    c, h, w = t["input_size"]
    title = f"{t['model']} as the paper's Table 1: input {c}x{h}x{w}"
    foot = [
        f"total: {t['total_weights']:,} weights ({t['total_params']:,} params with biases), "
        f"{t['total_macs'] / 1e9:.3f} GMACs",
        *t["notes"],
    ]
    if t["paper_figures"]:
        foot.append(
            hints_named(t["model"])
            .get("table1", {})
            .get("figures_note", "paper params / ops: the published figures")
        )
    return document(title, body, foot, fmt)
