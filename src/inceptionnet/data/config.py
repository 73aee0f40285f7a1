"""``InputConfig``: how images are prepared for a model (size, channels, statistics, resize policy,
input space), and ``channel_stats`` that fits per-channel statistics to a channel count.

The type that models, checkpoints, deployment, serving and metrics share; it needs no torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
    def from_dict(cls, d: dict[str, Any]) -> InputConfig:
        return cls(
            int(d["input_size"]), int(d["in_chans"]), tuple(d["mean"]), tuple(d["std"]),
            float(d.get("crop_pct", 1.0)), str(d.get("interpolation", "bilinear")), d.get("dataset"),
            str(d.get("input_space") or "RGB"), tuple(d.get("input_range") or (0.0, 1.0)),
        )  # fmt: skip

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
