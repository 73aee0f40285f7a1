"""Rendering helpers shared by the summary, Table 1 and bottleneck views: one table in the four formats."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError

__all__ = ["FORMATS", "check_format", "document", "fmt_int", "fmt_shape", "table"]

FORMATS = ("text", "markdown", "csv", "json")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def fmt_int(v: Any) -> str:
    return "" if v is None else f"{v:,}"


def fmt_shape(shape: Any) -> str:
    if not shape:
        return "-"
    if isinstance(shape[0], list):
        return ", ".join(fmt_shape(s) for s in shape)
    return "x".join(str(s) for s in shape)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, right: Sequence[bool]) -> str:
    """Rows of cells as an aligned text table, markdown or csv (``right``: right-aligned columns)."""
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


def document(title: str, body: str, foot: Sequence[str], fmt: str) -> str:
    """A title, the table and its footnotes (markdown: a bold title and a list of notes)."""
    if fmt == "markdown":
        return "\n".join([f"**{title}**", "", body, "", *(f"- {f}" for f in foot)])
    return "\n".join([title, "", body, "", *foot])
