"""Weight entries, safe loading and key remapping.

Files are read with ``torch.load(weights_only=True)`` or safetensors: a pickle that would run code is
refused. ``create_model(name, weights=...)`` accepts a weight entry name (``list_weights(name)``) or a
local ``.pth`` / ``.pt`` / ``.safetensors`` file: a bare state_dict, a training checkpoint of this
project (``{"model": ..., "model_kwargs": ...}``), or a known third-party layout (see ``KEY_MAPS``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .layers import InceptionBase

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


register_weights(WeightEntry(
    model="googlenet", tag="imagenet1k_v1",
    url="https://download.pytorch.org/models/googlenet-1378be20.pth", filename="googlenet-1378be20.pth",
    sha256="1378be20", accuracy={"imagenet1k_top1": 69.778, "imagenet1k_top5": 89.530},
    params=6624904, gmacs=1.498, model_kwargs={"transform_input": True},
    source="torchvision GoogLeNet_Weights.IMAGENET1K_V1 (ported from TensorFlow)",
))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Reading files safely


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_file(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint or state_dict file without running code from it.

    Raises ``FileNotFoundError`` or ``CheckpointError`` (one clear line) for missing, empty,
    truncated, foreign or unsafe files.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes); the file was not written completely")
    if _is_safetensors(p):
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot read safetensors file {p}: {_first_line(e)}") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "Unsupported operand" in msg:
            raise CheckpointError(
                f"refusing unsafe checkpoint {p}: it contains pickled code or objects that are not "
                f"tensors ({_unsafe_detail(msg)}); only load files from sources you trust, and "
                "prefer .safetensors"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {p}: not a PyTorch checkpoint ({_first_line(e)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {p}: the file is truncated or not a PyTorch checkpoint "
            f"({_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _unsafe_detail(msg: str) -> str:
    for ln in msg.splitlines():
        if "Unsupported global" in ln or "Unsupported operand" in ln:
            return ln.replace("WeightsUnpickler error:", "").strip()[:160]
    return "weights_only load refused it"


def extract_state_dict(obj: Any, source: str = "checkpoint") -> StateDict:
    """The model state_dict inside a loaded file (bare, ``{"model": ...}``, ``{"state_dict": ...}``)."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} holds no model state_dict (expected a dict of tensors)")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):  # saved from DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if all(k.startswith("_orig_mod.") for k in sd):  # saved from torch.compile
        sd = {k[len("_orig_mod.") :]: v for k, v in sd.items()}
    return sd


# --------------------------------------------------------------------------------------------------
# Third-party key layouts: name -> (detector, remapper). Filled by the model families that need them.

KeyMap = Callable[[StateDict], StateDict]
KEY_MAPS: dict[str, tuple[str, Callable[[StateDict], bool], KeyMap]] = {}


def register_key_map(name: str, model: str, detect: Callable[[StateDict], bool], remap: KeyMap) -> None:
    KEY_MAPS[name] = (model, detect, remap)


def remap_foreign_keys(model_name: str, sd: StateDict) -> StateDict:
    for _, (model, detect, remap) in KEY_MAPS.items():
        if model == model_name and detect(sd):
            return remap(sd)
    return sd


# --------------------------------------------------------------------------------------------------
# Fitting a state_dict to a model


def adapt_first_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Fit a first-conv weight to ``in_chans``: sum RGB into one channel, or repeat and rescale."""
    src = weight.shape[1]
    if src == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // src)
    w = weight.repeat(1, reps, 1, 1)[:, :in_chans]
    return w * (src / float(in_chans))


def fit_state_dict(model: nn.Module, sd: StateDict, *, source: str = "checkpoint") -> list[str]:
    """Load ``sd`` into ``model`` strictly, after adapting the first conv to the model's input
    channels and dropping classifier tensors whose shape does not fit (they keep their fresh init,
    with a warning). Returns the names of the re-initialized classifier tensors."""
    cfg: Mapping[str, Any] = getattr(model, "default_cfg", {}) or {}
    own = model.state_dict()
    sd = dict(sd)
    first = cfg.get("first_conv")
    if first and f"{first}.weight" in sd and f"{first}.weight" in own:
        key = f"{first}.weight"
        if sd[key].dim() == 4 and sd[key].shape[1] != own[key].shape[1]:
            sd[key] = adapt_first_conv(sd[key], own[key].shape[1])
    heads = [cfg.get("classifier"), *cfg.get("aux_classifiers", ())]
    reset: list[str] = []
    for head in (h for h in heads if h):
        for suffix in ("weight", "bias"):
            key = f"{head}.{suffix}"
            if key in sd and (key not in own or sd[key].shape != own[key].shape):
                del sd[key]
                reset.append(key)
            elif key not in sd and key in own and any(k.startswith(f"{head}.") for k in reset):
                reset.append(key)
    missing = [k for k in own if k not in sd and k not in reset]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{source} does not fit model {type(model).__name__}: {'; '.join(parts)}; "
            "is it a checkpoint of another model or configuration?"
        )
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source} does not fit the model: tensor {k} has shape {tuple(v.shape)} in the file "
                f"but {tuple(own[k].shape)} in the model; check the model name and its flags (width, in_chans, ...)"
            )
    model.load_state_dict(sd, strict=False)
    if reset:
        heads_reset = sorted({k.rsplit(".", 1)[0] for k in reset})
        warnings.warn(
            f"classifier {', '.join(heads_reset)} re-initialized for {getattr(model, 'num_classes', '?')} "
            "classes (the weights have another number of classes); fine-tune it before use",
            stacklevel=3,
        )
    return reset


# --------------------------------------------------------------------------------------------------
# Fetching entries


def _package_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


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
            f"cannot download weights {entry.model}.{entry.tag} from {entry.url} ({_first_line(e)}); "
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


def build_with_weights(
    name: str,
    builder: Callable[..., nn.Module],
    weights: str,
    *,
    num_classes: int,
    in_chans: int,
    **kwargs: Any,
) -> InceptionBase:
    """``create_model(name, weights=...)``: a weight entry tag or a local file."""
    entry = get_weight_entry(name, weights)
    model_kwargs: dict[str, Any] = {}
    classes: tuple[str, ...] | None = None
    if entry is not None:
        path = entry_path(entry)
        verify_sha256(path, entry.sha256)
        model_kwargs.update(entry.model_kwargs)
        classes = entry.classes
        source = f"weights {name}.{weights}"
    else:
        path = Path(weights)
        if not path.exists():
            tags = list_weights(name)
            known = (
                f"; weight entries of {name}: {', '.join(tags)}"
                if tags
                else f"; {name} has no weight entries"
            )
            raise FileNotFoundError(f"weights {weights!r} is neither a file nor a weight entry{known}")
        source = f"checkpoint {path}"
    obj = load_file(path)
    if isinstance(obj, Mapping):
        saved_name = obj.get("model_name")
        if isinstance(saved_name, str) and saved_name != name:
            raise CheckpointError(
                f"{source} is a {saved_name} checkpoint, not {name}; use --model {saved_name}"
            )
        if isinstance(obj.get("model_kwargs"), Mapping):
            model_kwargs.update(obj["model_kwargs"])
        if classes is None and isinstance(obj.get("classes"), list | tuple):
            classes = tuple(str(c) for c in obj["classes"])
    model_kwargs.update(kwargs)
    model = builder(num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    assert isinstance(model, InceptionBase)
    sd = remap_foreign_keys(name, extract_state_dict(obj, source))
    fit_state_dict(model, sd, source=source)
    cfg = dict(model.default_cfg)
    if entry is not None:
        cfg.update(
            mean=entry.mean if in_chans == entry.input_size[0] else cfg["mean"],
            std=entry.std if in_chans == entry.input_size[0] else cfg["std"],
            input_size=(in_chans, *entry.input_size[1:]),
            interpolation=entry.interpolation, crop_pct=entry.crop_pct,
            input_space=entry.input_space, input_range=entry.input_range,
        )  # fmt: skip
    if classes is not None and len(classes) == num_classes:
        cfg["classes"] = classes
    cfg["weights"] = weights
    model.default_cfg = cfg
    return model
