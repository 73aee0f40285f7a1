"""``InputConfig``: how images are prepared for a model (size, channels, statistics, resize policy,
input space), and ``channel_stats`` that fits per-channel statistics to a channel count.

The type that models, checkpoints, deployment, serving and metrics share; it needs no torchvision.
``input_config_from_fields`` is the one check of an ``InputConfig`` read from a file (a checkpoint's
``data_cfg``, an exported file's metadata): types, sizes and ranges, before anything is allocated;
``class_names`` the one check of a file's class list.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, excerpt

# What a file may declare (a model input of 299 px is the family's largest; export and bench take up
# to 4096 px; a file saying more is damaged or hostile, and its size would be allocated per image).
MAX_INPUT_SIZE = 4096
MAX_IN_CHANS = 64
INPUT_SPACES = ("RGB", "BGR")
MAX_CLASSES = 100_000  # class names a file may list (ImageNet-21k has 21,843)
MAX_CLASS_NAME = 1000  # characters of one class name


@dataclass
class InputConfig:
    """How images are prepared for a model: size, channels, statistics, resize policy."""

    input_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    dataset: str | None = None  # the data set it was trained on, when known
    input_space: str = "RGB"  # "BGR": channels reversed, as Caffe models (BN-Inception) expect
    input_range: tuple[float, float] = (0.0, 1.0)  # (0, 255): pixel values not scaled to [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return dict(
            input_size=self.input_size, in_chans=self.in_chans, mean=list(self.mean), std=list(self.std),
            crop_pct=self.crop_pct, interpolation=self.interpolation, dataset=self.dataset,
            input_space=self.input_space, input_range=list(self.input_range),
        )  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "input config") -> InputConfig:
        """``to_dict``'s inverse, every field checked (``input_config_from_fields``)."""
        return input_config_from_fields(d, where)

    @classmethod
    def from_model(cls, model: Any, dataset: str | None = None) -> InputConfig:
        """What the model's ``default_cfg`` asks for (its weights' statistics, resize policy and input
        space: BGR / 0-255 for Caffe ports) at its default input size and its ``in_chans``."""
        cfg = model.default_cfg
        in_chans = int(model.in_chans)
        return cls(
            int(cfg["input_size"][2]), in_chans,
            channel_stats(cfg["mean"], in_chans), channel_stats(cfg["std"], in_chans),
            float(cfg.get("crop_pct", 1.0)), str(cfg.get("interpolation", "bilinear")), dataset,
            str(cfg.get("input_space") or "RGB"), tuple(cfg.get("input_range") or (0.0, 1.0)),
        )  # fmt: skip


def channel_stats(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """Per-channel mean or std for ``in_chans`` channels: as given when the count matches, else the
    channel average repeated (RGB statistics for a 1-channel model, a 1-channel data set's for RGB)."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    return (sum(values) / len(values),) * in_chans


def input_config_from_fields(
    fields: Mapping[str, Any],
    where: str,
    *,
    error: type[Exception] = UsageError,
    prefix: str = "",
    fix: str = "the file is damaged",
) -> InputConfig:
    """An ``InputConfig`` from ``fields`` (the keys of ``InputConfig.to_dict``) read from a file, every
    field checked before use: ``input_size`` in 1..MAX_INPUT_SIZE, ``in_chans`` in 1..MAX_IN_CHANS,
    ``mean`` / ``std`` one finite number per channel (std > 0), ``crop_pct`` in (0, 1], an
    ``input_range`` with low < high, strings where names go. Anything else is one ``error`` line:
    ``{where}: {prefix}{field} is {excerpt}, not ...; {fix}``."""

    def bad(key: str, want: str) -> Exception:
        return error(f"{where}: {prefix}{key} is {excerpt(fields[key])}, not {want}; {fix}")

    missing = [k for k in ("input_size", "in_chans", "mean", "std") if k not in fields]
    if missing:
        raise error(f"{where}: its {prefix or 'input configuration '}lacks {', '.join(missing)}; {fix}")
    size = _int_in(fields["input_size"], 1, MAX_INPUT_SIZE)
    if size is None:
        raise bad("input_size", f"a positive integer (at most {MAX_INPUT_SIZE})")
    chans = _int_in(fields["in_chans"], 1, MAX_IN_CHANS)
    if chans is None:
        raise bad("in_chans", f"a positive integer (at most {MAX_IN_CHANS})")
    mean, std = _reals(fields["mean"], chans), _reals(fields["std"], chans, positive=True)
    if mean is None:
        raise bad("mean", f"{chans} finite numbers")
    if std is None:
        raise bad("std", f"{chans} finite positive numbers")
    crop = _reals([fields.get("crop_pct", 1.0)], 1, positive=True)
    if crop is None or crop[0] > 1:
        raise bad("crop_pct", "a number in (0, 1]")
    names = {}
    for key, default, allowed in (("interpolation", "bilinear", None), ("input_space", "RGB", INPUT_SPACES)):
        v = fields.get(key) or default
        if not isinstance(v, str) or len(v) > 40 or allowed and v not in allowed:
            raise bad(key, f"one of {', '.join(allowed)}" if allowed else "a name")
        names[key] = v
    dataset = fields.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or len(dataset) > 200):
        raise bad("dataset", "a name")
    rng = _reals(fields.get("input_range") or (0.0, 1.0), 2)
    if rng is None:
        raise bad("input_range", "two finite numbers")
    if not rng[0] < rng[1]:
        raise error(f"{where}: {prefix}input_range {excerpt(fields['input_range'])} is empty; {fix}")
    return InputConfig(
        size, chans, mean, std, crop[0], names["interpolation"], dataset, names["input_space"], (rng[0], rng[1]),
    )  # fmt: skip


def _int_in(v: Any, lo: int, hi: int) -> int | None:
    """``v`` as an int when it is an integer (not a bool) in ``lo..hi``, else None."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        return None
    return int(v) if lo <= int(v) <= hi else None


def _reals(v: Any, n: int, positive: bool = False) -> tuple[float, ...] | None:
    """``v`` as ``n`` finite floats (positive ones when ``positive``), else None. The length is
    checked before any element is looked at."""
    if not isinstance(v, (list, tuple)) or len(v) != n:
        return None
    if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v):
        return None
    try:
        out = tuple(float(x) for x in v)
    except OverflowError:  # an int of 400 digits
        return None
    return out if all(math.isfinite(x) and (x > 0 or not positive) for x in out) else None


def class_names(
    value: Any, where: str, *, error: type[Exception] = UsageError, fix: str = "the file is damaged"
) -> list[str]:
    """A file's class names: a list of at most MAX_CLASSES strings of at most MAX_CLASS_NAME
    characters ([] for None), else one ``error`` line with a bounded excerpt. Their count is checked
    against the classifier by the caller, who knows the weights."""
    if value is None:
        return []
    ok = isinstance(value, (list, tuple)) and len(value) <= MAX_CLASSES
    if not ok or not all(isinstance(c, str) and len(c) <= MAX_CLASS_NAME for c in value):
        raise error(
            f"{where}: its classes {excerpt(value)} are not a list of class names (at most "
            f"{MAX_CLASSES:,} names of at most {MAX_CLASS_NAME} characters); {fix}"
        )
    return [str(c) for c in value]
