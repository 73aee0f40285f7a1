"""``create_model``: build a registered model, with weights from an entry or a local file.

``weights=`` accepts a weight entry name (``list_weights(name)``) or a local ``.pth`` / ``.pt`` /
``.safetensors`` file: a bare state_dict, a training checkpoint of this project (``{"model": ...,
"model_kwargs": ...}``) or a known third-party layout (``_weights.KEY_MAPS``). Files are read by
``fileio.load_file`` (``weights_only=True`` or safetensors). ``fit_state_dict`` loads strictly after
the adaptations a fine-tuner expects (first conv to ``in_chans``, a new classifier); with
``new_head_ok=False`` (what inference uses, ``checkpoint.load_for_inference``) a classifier that does
not fit is an error instead of a random new head.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from ..data import InputConfig, channel_stats
from ..data.config import class_names, input_config_from_fields
from ..errors import CheckpointError, UsageError, excerpt, first_line
from ..fileio import is_safetensors, load_file
from ._registry import check_arg, check_builder_kwargs, get_model_builder
from ._weights import (
    KEY_MAP_ENTRIES,
    WeightEntry,
    detect_key_map,
    entry_path,
    get_weight_entry,
    list_weights,
    remap_foreign_keys,
    verify_sha256,
)
from .layers import InceptionBase

StateDict = dict[str, Tensor]


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
# What a weights file says about itself: read once, with one strictness, by create_model(weights=...)
# and by checkpoint.open_model


@dataclass(frozen=True)
class CheckpointMeta:
    """The metadata of a weights file (a training checkpoint has it all; a bare state_dict none):
    ``model_name``, builder flags, class names, and the data config as saved (``data_cfg``) and as an
    ``InputConfig`` (None without one)."""

    model_name: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    data_cfg: dict[str, Any] = field(default_factory=dict)
    input_config: InputConfig | None = None


@dataclass(frozen=True)
class LoadedWeights:
    """A weight entry or weights file read once (``load_weights``): ``weights`` as given, the file,
    how messages name it (``source``), its state_dict and metadata, and its entry (None for a file)."""

    weights: str
    path: Path
    source: str
    state_dict: StateDict
    meta: CheckpointMeta
    entry: WeightEntry | None = None


def load_weights(weights: str, name: str | None = None) -> LoadedWeights:
    """Read ``weights`` (a weight entry of model ``name``, or a file) and its metadata, once."""
    entry = get_weight_entry(name, weights) if name is not None else None
    if entry is not None:
        path = entry_path(entry)
        verify_sha256(path, entry.sha256)
        source = f"weights {name}.{weights}"
    else:
        path = Path(weights)
        if name is not None and not path.exists():
            tags = list_weights(name)
            known = (
                f"; weight entries of {name}: {', '.join(tags)}"
                if tags
                else f"; {name} has no weight entries"
            )
            raise FileNotFoundError(f"weights {weights!r} is neither a file nor a weight entry{known}")
        source = f"checkpoint {path}"
    obj = load_file(path)
    meta = read_checkpoint_meta(path, obj)
    return LoadedWeights(str(weights), path, source, extract_state_dict(obj, source), meta, entry)


MAX_MODEL_KWARGS = 64  # builder flags a file may set; a list value holds at most this many scalars
_SCALARS = (str, int, float, bool, type(None))
_DAMAGED = "the metadata is damaged"


def read_checkpoint_meta(path: Path, obj: Any) -> CheckpointMeta:
    """The metadata of the file ``path`` (loaded as ``obj``; a safetensors file's is in its header),
    each field checked for type and size before use (a file may hold any structure ``weights_only``
    allows, a list of shared references that never ends when printed included): damaged metadata is
    one ``CheckpointError`` naming the file and the field, with a bounded excerpt of the value."""
    meta = _safetensors_meta(path) if is_safetensors(path) else obj
    if not isinstance(meta, Mapping):
        return CheckpointMeta()
    name = meta.get("model_name")
    if "model_name" in meta and (not isinstance(name, str) or not 0 < len(name) <= 100):
        raise CheckpointError(
            f"checkpoint {path}: its model_name {excerpt(name)} is not a model name; {_DAMAGED}"
        )
    dcfg = meta.get("data_cfg") or {}
    if not isinstance(dcfg, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: its data_cfg is a {type(dcfg).__name__}, not a mapping; {_DAMAGED}"
        )
    icfg = None
    if dcfg:
        icfg = input_config_from_fields(
            dcfg, f"checkpoint {path}", error=CheckpointError, prefix="data_cfg ", fix=_DAMAGED
        )
    classes = class_names(meta.get("classes"), f"checkpoint {path}", error=CheckpointError, fix=_DAMAGED)
    return CheckpointMeta(name, _meta_kwargs(meta.get("model_kwargs"), path), classes, dict(dcfg), icfg)


def _safetensors_meta(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read the metadata of safetensors file {path}: {e}") from None
    out: dict[str, Any] = dict(meta)
    for key in ("model_kwargs", "classes", "data_cfg"):
        if key in out:
            try:
                out[key] = json.loads(out[key])
            except (ValueError, RecursionError) as e:  # RecursionError: 100,000 nested brackets
                raise CheckpointError(
                    f"safetensors file {path}: its metadata {key} is not valid JSON ({first_line(e, 100)}); "
                    "the file's metadata is damaged: write it again from the .pt checkpoint"
                ) from None
    return out


def _meta_kwargs(value: Any, path: Path) -> dict[str, Any]:
    """A file's builder flags: a mapping of at most MAX_MODEL_KWARGS names to scalars or short flat
    lists of scalars (what ``--model-kwargs`` can say)."""
    if value is None:
        return {}
    ok = isinstance(value, Mapping) and len(value) <= MAX_MODEL_KWARGS
    if not ok or not all(isinstance(k, str) and len(k) <= 100 and _simple(v) for k, v in value.items()):
        raise CheckpointError(
            f"checkpoint {path}: its model_kwargs {excerpt(value)} are not a mapping of flag names to "
            f"numbers, strings or short lists; {_DAMAGED}"
        )
    return dict(value)


def _simple(v: Any) -> bool:
    if isinstance(v, list | tuple):
        return len(v) <= MAX_MODEL_KWARGS and all(isinstance(x, _SCALARS) and _simple(x) for x in v)
    return isinstance(v, _SCALARS) and (not isinstance(v, str) or len(v) <= 200)


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


def fit_state_dict(
    model: nn.Module, sd: StateDict, *, source: str = "checkpoint", new_head_ok: bool = True
) -> list[str]:
    """Load ``sd`` into ``model`` strictly, after adapting the first conv to the model's input
    channels and dropping classifier tensors whose shape does not fit (they keep their fresh init,
    with a warning unless ``num_classes=0``). Also accepted: a file without the classifier (fresh
    init, warning), tensors of aux heads the model was built without (``default_cfg["aux_modules"]``,
    skipped) and BatchNorm layers without ``num_batches_tracked`` (PyTorch < 0.4.1 files, set to 0).
    Returns the names of the re-initialized classifier tensors.

    ``new_head_ok=False`` (inference: a random classifier would give random answers): a classifier
    that does not fit, or is missing, raises ``CheckpointError`` instead of the warning; fine-tuning
    (``train --weights`` with another number of classes) keeps the default."""
    cfg: Mapping[str, Any] = getattr(model, "default_cfg", {}) or {}
    own = model.state_dict()
    file_sd = sd
    sd = dict(sd)
    first = cfg.get("first_conv")
    if first and f"{first}.weight" in sd and f"{first}.weight" in own:
        key = f"{first}.weight"
        if sd[key].dim() == 4 and sd[key].shape[1] != own[key].shape[1]:
            sd[key] = adapt_first_conv(sd[key], own[key].shape[1])
    # tensors of aux heads the model was built without (e.g. torchvision's AuxLogits, aux_logits=False)
    aux_modules = tuple(cfg.get("aux_modules", ()))
    for k in [k for k in sd if k not in own and k.split(".", 1)[0] in aux_modules]:
        del sd[k]
    # checkpoints from PyTorch < 0.4.1 (e.g. Caffe ports) have no BatchNorm num_batches_tracked
    for k in own:
        if k.endswith(".num_batches_tracked") and k not in sd and k.rsplit(".", 1)[0] + ".running_mean" in sd:
            sd[k] = torch.zeros_like(own[k])
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
        head_in_file = any(k.startswith(f"{head}.") for k in sd)
        if not head_in_file and not any(k.startswith(f"{head}.") for k in reset):
            # a file without this classifier (saved with num_classes=0, or facenet's embedding model)
            reset += [k for k in own if k.startswith(f"{head}.")]
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
    main_reset = [k for k in reset if k.startswith(f"{cfg.get('classifier')}.")]  # aux heads: unused here
    if main_reset and not new_head_ok and getattr(model, "num_classes", None) != 0:
        raise CheckpointError(_head_mismatch(model, source, main_reset, file_sd))
    model.load_state_dict(sd, strict=False)
    if reset and getattr(model, "num_classes", None) != 0:  # num_classes=0: the head is dropped on purpose
        heads_reset = sorted({k.rsplit(".", 1)[0] for k in reset})
        warnings.warn(
            f"classifier {', '.join(heads_reset)} re-initialized for {getattr(model, 'num_classes', '?')} "
            "classes (the weights have another number of classes, or no classifier); fine-tune it before use",
            stacklevel=3,
        )
    return reset


def _head_mismatch(model: nn.Module, source: str, reset: list[str], file_sd: Mapping[str, Tensor]) -> str:
    own = model.state_dict()
    key = next((k for k in reset if k.endswith(".weight")), reset[0])
    if key in file_sd and key in own and file_sd[key].shape[0] == own[key].shape[0]:
        detail = f"{key} has shape {tuple(file_sd[key].shape)} in the file but {tuple(own[key].shape)} in the model"
    elif key in file_sd and key in own:
        detail = (
            f"{key} has {file_sd[key].shape[0]} outputs in the file but the model was built for "
            f"{own[key].shape[0]} classes"
        )
    elif key in own:
        detail = f"the file has no {key.rsplit('.', 1)[0]} classifier"
    else:
        detail = f"the file's {key} does not exist in the model"
    return (
        f"{source} does not fit model {type(model).__name__}: {detail}; its classifier would be left "
        "random and give random answers (is the class list wrong, or the file of another task?)"
    )


# --------------------------------------------------------------------------------------------------
# Building

# Builder flags checked for every family before building (a clear UsageError rather than an
# OverflowError or a TypeError from deep inside the constructor): name -> (low, high, low included)
REAL_FLAGS: dict[str, tuple[float, float, bool]] = {
    "width": (0.0, 64.0, False),  # 64: layers of up to 65536 channels already
    "dropout": (0.0, 1.0, True),
    "dropout_aux": (0.0, 1.0, True),
    "drop_rate": (0.0, 1.0, True),
    "bn_eps": (0.0, 1.0, False),
}


def check_model_kwargs(kwargs: Mapping[str, Any]) -> None:
    """``UsageError`` for a real-valued builder flag (``REAL_FLAGS``) that is not a finite number in range."""
    for key, (lo, hi, lo_in) in REAL_FLAGS.items():
        if key not in kwargs:
            continue
        v = kwargs[key]
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(_float(v))
        if not ok or not (lo <= v if lo_in else lo < v) or v > hi:
            rule = (
                f"positive and finite (at most {hi:g})"
                if lo == 0 and not lo_in
                else f"a finite number between {lo:g} and {hi:g}"
            )
            raise UsageError(f"{key} must be {rule}, got {excerpt(v)}")


def _float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:  # an int of 400 digits
        return math.inf


def _build(builder: Callable[..., nn.Module], name: str, **kwargs: Any) -> InceptionBase:
    """``builder(**kwargs)``, with allocation failures (an absurd ``num_classes`` or ``width``) as one
    UsageError."""
    check_builder_kwargs(name, kwargs)  # names and types (a TypeError from the constructor otherwise)
    check_model_kwargs(kwargs)
    try:
        model = builder(**kwargs)
    except (RuntimeError, OverflowError, MemoryError) as e:
        msg = str(e)
        if isinstance(e, RuntimeError) and not any(
            s in msg for s in ("allocate", "out of memory", "Overflow", "too large")
        ):
            raise
        shown = ", ".join(f"{k}={excerpt(v, limit=40)}" for k, v in list(kwargs.items())[:8])
        raise UsageError(
            f"cannot build {name}({shown}): {first_line(e, limit=160)}; check num_classes, in_chans and width"
        ) from None
    assert isinstance(model, InceptionBase)
    return model


def build_with_weights(
    name: str,
    builder: Callable[..., nn.Module],
    weights: str | LoadedWeights,
    *,
    num_classes: int,
    in_chans: int,
    new_head_ok: bool = True,
    **kwargs: Any,
) -> InceptionBase:
    """``create_model(name, weights=...)``: a weight entry tag or a local file (or one already read by
    ``load_weights``: its metadata is not read again)."""
    w = weights if isinstance(weights, LoadedWeights) else load_weights(weights, name)
    meta, entry = w.meta, w.entry
    if meta.model_name is not None and meta.model_name != name:
        raise CheckpointError(
            f"{w.source} is a {meta.model_name} checkpoint, not {name}; use --model {meta.model_name}"
        )
    model_kwargs: dict[str, Any] = {**(entry.model_kwargs if entry is not None else {}), **meta.model_kwargs}
    classes = entry.classes if entry is not None else None
    if classes is None and meta.classes:
        classes = tuple(meta.classes)
    sd = w.state_dict
    layout = detect_key_map(name, sd)
    if entry is None and layout in KEY_MAP_ENTRIES:
        # a third-party file (e.g. pretrainedmodels, facenet): its entry says how to build and feed it
        entry = get_weight_entry(name, KEY_MAP_ENTRIES[layout])
        if entry is not None:
            model_kwargs = {**entry.model_kwargs, **model_kwargs}
    model_kwargs.update(kwargs)
    model = _build(builder, name, num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    sd = remap_foreign_keys(name, sd)
    fit_state_dict(model, sd, source=w.source, new_head_ok=new_head_ok)
    cfg = dict(model.default_cfg)
    if entry is not None:
        cfg.update(
            mean=channel_stats(entry.mean, in_chans),  # averaged over channels for another in_chans
            std=channel_stats(entry.std, in_chans),
            input_size=(in_chans, *entry.input_size[1:]),
            interpolation=entry.interpolation, crop_pct=entry.crop_pct,
            input_space=entry.input_space, input_range=entry.input_range,
        )  # fmt: skip
    if classes is not None and len(classes) == num_classes:
        cfg["classes"] = classes
    cfg["weights"] = w.weights
    model.default_cfg = cfg
    return model


@overload
def create_model(name: str, *, features_only: Literal[False] = ..., **kwargs: Any) -> InceptionBase: ...
@overload
def create_model(name: str, *, features_only: bool, **kwargs: Any) -> nn.Module: ...  # a feature extractor


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | None = None,
    new_head_ok: bool = True,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str | type[nn.Module] | None = None,
    **kwargs: Any,
) -> InceptionBase | nn.Module:
    """Build a registered model; ``weights`` is a weight entry name (``list_weights(name)``) or a local file.

    ``num_classes`` and ``in_chans`` default to the weight entry's (e.g. 10 classes and 1 channel for
    ``googlenet_small`` ``weights="fashion_mnist"``), else to 1000 and 3. With ``weights``, the model
    is built with the entry's architecture flags; a different ``num_classes`` re-initializes the
    classifier (with a warning) and ``in_chans`` different from the weights' sums or repeats the
    first conv over input channels. ``new_head_ok=False``: a classifier of the weights that does not
    fit ``num_classes`` is a ``CheckpointError`` instead (what inference needs). Constructor flags go
    through ``kwargs``, e.g. ``global_pool`` ("avg", "max", "avgmax", "": none, with ``num_classes=0``).

    ``features_only=True`` (timm's): a feature extractor instead (``_features.features_model``), whose
    forward returns the stage maps ``out_indices`` (default all; ``feature_info`` describes them) as
    a list (``feature_cls="list"``), a dict ("dict") or through ``forward_intermediates`` ("getter");
    weights load into the full model first, and ``num_classes`` defaults to 0 (no head is built).

    Bad arguments raise ``UsageError`` (a ``ValueError``): a name that is not a registered model (or not a string),
    ``num_classes`` / ``in_chans`` that are not integers in range, a ``width`` / dropout / ``bn_eps``
    that is not a finite number in range (``REAL_FLAGS``), sizes too large to allocate, a flag the
    model does not take or of the wrong type (``_registry.check_builder_kwargs``), ``out_indices``
    that break the stage-index rule (``_features.feature_take_indices``).
    """
    builder = get_model_builder(name)
    check_arg("create_model", "features_only", features_only, bool)
    check_arg("create_model", "new_head_ok", new_head_ok, bool)
    if not features_only and (out_indices is not None or feature_cls is not None):
        raise UsageError("out_indices and feature_cls select feature maps: they need features_only=True")
    if features_only and num_classes is None:
        num_classes = 0  # the extractor drops the head: build none
    if weights is not None and (num_classes is None or in_chans is None):
        entry = get_weight_entry(name, weights)
        if entry is not None:
            num_classes = entry.num_classes if num_classes is None else num_classes
            in_chans = entry.input_size[0] if in_chans is None else in_chans
    num_classes = 1000 if num_classes is None else num_classes
    in_chans = 3 if in_chans is None else in_chans
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise UsageError(f"num_classes must be a non-negative integer, got {excerpt(num_classes)}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise UsageError(f"in_chans must be a positive integer, got {excerpt(in_chans)}")
    if weights is None:
        model = _build(builder, name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        if not isinstance(weights, str | Path) or not str(weights):
            raise UsageError(f"weights must be a weight entry name or a file path, got {excerpt(weights)}")
        model = build_with_weights(
            name, builder, str(weights), num_classes=num_classes, in_chans=in_chans, new_head_ok=new_head_ok,
            **kwargs,
        )  # fmt: skip
        model.sync_pool_size()  # the weights' input size
    if features_only:
        from ._features import features_model

        return features_model(model, out_indices, feature_cls)
    return model
