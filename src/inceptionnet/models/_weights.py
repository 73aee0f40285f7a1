"""Weight entries (as torchvision's ``Weights`` / timm's ``default_cfgs``) and third-party key layouts.

Each model family registers its entries and layouts in its own file; this module only keeps the
tables, finds an entry's file (inside the package or torch.hub's cache) and checks its sha256.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, first_line
from ..fileio import sha256_of

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class WeightEntry:
    """A named set of weights for one model, with what is needed to use them."""

    model: str
    tag: str
    url: str | None = None  # http(s) URL, or None for files shipped inside the package
    filename: str = ""
    sha256: str | None = None  # full hex digest, or a prefix (torchvision's file-name convention)
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    input_space: str = "RGB"  # "BGR": channels reversed (Caffe models)
    input_range: tuple[float, float] = (0.0, 1.0)  # (0, 255): pixel values not scaled to [0, 1]
    accuracy: Mapping[str, float] = field(default_factory=dict)
    params: int | None = None
    gmacs: float | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    key_map: str | None = None  # name in KEY_MAPS for third-party layouts
    source: str = ""


_ENTRIES: dict[str, dict[str, WeightEntry]] = {}


def register_weights(entry: WeightEntry) -> WeightEntry:
    _ENTRIES.setdefault(entry.model, {})[entry.tag] = entry
    return entry


def list_weights(model: str) -> list[str]:
    """Tags of the weight entries of ``model`` (``create_model(model, weights=tag)``)."""
    return sorted(_ENTRIES.get(model, {}))


def get_weight_entry(model: str, tag: str) -> WeightEntry | None:
    return _ENTRIES.get(model, {}).get(tag)


KeyMap = Callable[[StateDict], StateDict]


KEY_MAPS: dict[str, tuple[str, Callable[[StateDict], bool], KeyMap]] = {}


# key map name -> weight entry tag whose architecture flags and input config the layout implies
KEY_MAP_ENTRIES: dict[str, str] = {}


def register_key_map(
    name: str,
    model: str,
    detect: Callable[[StateDict], bool],
    remap: KeyMap,
    *,
    entry: str | None = None,
) -> None:
    """Teach ``create_model(model, weights=file)`` a third-party layout: ``detect(sd)`` recognizes it,
    ``remap(sd)`` renames it to this project's keys; ``entry`` (a weight entry tag of ``model``)
    supplies the architecture flags and the input config (mean/std, BGR, 0-255) such files need."""
    KEY_MAPS[name] = (model, detect, remap)
    if entry is not None:
        KEY_MAP_ENTRIES[name] = entry


def detect_key_map(model_name: str, sd: StateDict) -> str | None:
    """Name of the third-party layout of ``sd`` for ``model_name``, or None (this project's keys)."""
    for name, (model, detect, _) in KEY_MAPS.items():
        if model == model_name and detect(sd):
            return name
    return None


def remap_foreign_keys(model_name: str, sd: StateDict) -> StateDict:
    for _, (model, detect, remap) in KEY_MAPS.items():
        if model == model_name and detect(sd):
            return remap(sd)
    return sd


def _package_weights_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "weights"


def entry_path(entry: WeightEntry) -> Path:
    """Where the entry's file is (inside the package, or torch.hub's cache); downloads when needed."""
    if entry.url is None:
        return _package_weights_dir() / entry.filename
    cache = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    if cache.exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(entry.url, str(cache), progress=True)
    except Exception as e:  # no network here is the common case
        raise FileNotFoundError(
            f"cannot download weights {entry.model}.{entry.tag} from {entry.url} ({first_line(e)}); "
            f"without a network, put the file at {cache}"
        ) from None
    return cache


def verify_sha256(path: Path, expected: str | None) -> None:
    if not expected:
        return
    digest = sha256_of(path)
    if not digest.startswith(expected.lower()):
        raise CheckpointError(
            f"sha256 of {path} is {digest[:16]}..., expected {expected[:16]}...: the file is corrupt or "
            "not these weights; delete it and fetch it again"
        )
