"""A model ready for inference from what a user has: a training checkpoint of this project (``.pt``
or ``.safetensors`` with its metadata), or a model name with a weight entry or a weights file.

``load_for_inference`` is what eval, predict, export and serve share: it returns the model in eval
mode, its name, how to prepare its inputs (``data.InputConfig``) and its class names.

It is stricter than ``create_model(weights=...)`` (which a fine-tuner uses): a classifier that does
not fit the class list is an error (not a random new head), damaged metadata (``model_name``,
``model_kwargs``, ``classes``, ``data_cfg``) is one ``CheckpointError`` naming the file, and weights
with NaN/inf values are a ``NonFiniteError`` unless ``allow_nan``.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as D
from .errors import CheckpointError, NonFiniteError
from .fileio import is_safetensors, load_file
from .models import InceptionBase, create_model, fit_state_dict, get_model_builder, get_weight_entry
from .models._builder import extract_state_dict

# classif/logits before last_linear: in facenet's Inception-ResNet-v1, last_linear is the 512-d embedding
CLASSIFIER_KEYS = ("fc.weight", "classif.weight", "logits.weight", "classifier.weight", "last_linear.weight")


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
            except ValueError as e:
                raise CheckpointError(
                    f"safetensors file {path}: its metadata {key} is not valid JSON ({e}); the file's "
                    "metadata is damaged: write it again from the .pt checkpoint"
                ) from None
    return out


def load_for_inference(
    checkpoint: str | None,
    model_name: str | None,
    weights: str | None,
    device: str | torch.device = "cpu",
    *,
    allow_nan: bool = False,
    nan_flag: str | None = "--allow-nan",
) -> tuple[InceptionBase, str, D.InputConfig, list[str]]:
    """(model in eval mode, model name, how to prepare its inputs, class names) from ``--checkpoint
    FILE`` or ``--model NAME --weights ENTRY|FILE`` (a training checkpoint given as ``--weights`` is
    read as a checkpoint, so its data config is used).

    NaN/inf weights raise ``NonFiniteError`` unless ``allow_nan`` (``nan_flag``: the flag that allows
    them, named in the message)."""
    for flag, value in (("--checkpoint", checkpoint), ("--model", model_name), ("--weights", weights)):
        if value is not None and not str(value).strip():
            raise ValueError(f"{flag} is empty; give {'a model name' if flag == '--model' else 'a file'}")
    if checkpoint and weights:
        raise ValueError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE, not both")
    if checkpoint:
        path = Path(checkpoint)
        model, name, icfg, classes = _from_checkpoint(path, load_file(path), model_name)
        source = f"checkpoint {path}"
    elif model_name:
        if not weights:
            raise ValueError("--model needs --weights (an entry name or a file), or use --checkpoint")
        name = model_name
        model, icfg, classes = _from_weights(model_name, weights)
        source = f"weights {weights}"
    else:
        raise ValueError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE")
    if not allow_nan:
        check_finite_weights(model, source, nan_flag)
    if not classes:
        classes = [str(i) for i in range(model.num_classes)]
    return model.to(device).eval(), name, icfg, classes


def check_finite_weights(model: nn.Module, source: str, flag: str | None = "--allow-nan") -> None:
    """``NonFiniteError`` naming ``source`` when a parameter or buffer holds NaN/inf (a diverged run
    saved them; every answer would be NaN or garbage)."""
    bad: list[tuple[str, int]] = []
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.device.type != "meta" and not bool(torch.isfinite(v).all()):
            bad.append((k, int((~torch.isfinite(v)).sum())))
    if bad:
        n = sum(c for _, c in bad)
        names = ", ".join(k for k, _ in bad[:3])
        anyway = f", or pass {flag} to run it anyway" if flag else ""
        raise NonFiniteError(
            f"{source} has {n} non-finite (NaN/inf) weights in {len(bad)} tensors (first: {names}); the "
            f"run that saved them diverged: use an earlier checkpoint{anyway}"
        )


def _from_checkpoint(
    path: Path, obj: Any, model_name: str | None
) -> tuple[InceptionBase, str, D.InputConfig, list[str]]:
    """A training checkpoint: the model, its data config and classes are in its metadata."""
    meta = _safetensors_meta(path) if is_safetensors(path) else obj
    if not isinstance(meta, Mapping) or "model_name" not in meta:
        raise CheckpointError(
            f"{path} does not say which model it holds (no model_name); use --model NAME --weights {path}"
        )
    name = meta["model_name"]
    if not isinstance(name, str) or not name:
        raise CheckpointError(
            f"checkpoint {path}: its model_name {name!r} is not a model name; the metadata is damaged"
        )
    try:
        get_model_builder(name)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} holds a model this version does not have: {e}") from None
    if model_name and model_name != name:
        raise CheckpointError(f"{path} is a {name} checkpoint, not {model_name}")
    sd = extract_state_dict(obj, f"checkpoint {path}")
    classes = _classes(meta.get("classes"), path)
    kwargs = _model_kwargs(meta.get("model_kwargs"), path)
    dcfg = meta.get("data_cfg") or {}
    if not isinstance(dcfg, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: its data_cfg is a {type(dcfg).__name__}, not a mapping; the metadata is damaged"
        )
    rows = _classifier_size(sd, f"checkpoint {path}")
    if classes and rows != len(classes):
        raise CheckpointError(
            f"checkpoint {path} lists {len(classes)} classes but its classifier has {rows} outputs: the "
            "class list and the weights do not belong together (a damaged or edited checkpoint?)"
        )
    conv_chans = _first_conv_chans(sd, f"checkpoint {path}")
    in_chans = conv_chans
    if "in_chans" in dcfg:
        in_chans = _positive_int(dcfg["in_chans"], "data_cfg in_chans", path)
        if in_chans != conv_chans:
            raise CheckpointError(
                f"checkpoint {path}: its data_cfg says {in_chans} input channels but its first conv takes "
                f"{conv_chans}; the metadata is damaged"
            )
    try:
        model = create_model(name, num_classes=len(classes) or rows, in_chans=in_chans, **kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path}: its model_kwargs {kwargs} do not build {name} ({e}); is it a checkpoint "
            "of another model or version?"
        ) from None
    fit_state_dict(model, sd, source=f"checkpoint {path}", new_head_ok=False)
    icfg = _input_config(dcfg, path) if dcfg else D.InputConfig.from_model(model)
    return model, name, icfg, classes


def _classes(value: Any, path: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(c, str) for c in value):
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        raise CheckpointError(
            f"checkpoint {path}: its classes {shown} are not a list of class names; the metadata is damaged"
        )
    return list(value)


def _model_kwargs(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise CheckpointError(
            f"checkpoint {path}: its model_kwargs {value!r} are not a mapping of flag names; the "
            "metadata is damaged"
        )
    return dict(value)


def _positive_int(v: Any, what: str, path: Path) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < 1:
        raise CheckpointError(
            f"checkpoint {path}: {what} is {v!r}, not a positive integer; the metadata is damaged"
        )
    return int(v)


def _numbers(
    v: Any, what: str, path: Path, n: int | None = None, positive: bool = False
) -> tuple[float, ...]:
    ok = isinstance(v, list | tuple) and all(
        isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x)) for x in v
    )
    if ok and (n is not None and len(v) != n or positive and any(float(x) <= 0 for x in v)):
        ok = False
    if not ok:
        need = f"{n} " if n is not None else ""
        sign = "positive " if positive else ""
        raise CheckpointError(
            f"checkpoint {path}: {what} is {v!r}, not {need}finite {sign}numbers; the metadata is damaged"
        )
    return tuple(float(x) for x in v)


def _input_config(dcfg: Mapping[str, Any], path: Path) -> D.InputConfig:
    """The checkpoint's ``data_cfg`` as an ``InputConfig``, each field checked (a damaged or foreign
    file says which one is wrong instead of a KeyError or TypeError)."""
    missing = [k for k in ("input_size", "in_chans", "mean", "std") if k not in dcfg]
    if missing:
        raise CheckpointError(
            f"checkpoint {path}: its data_cfg lacks {', '.join(missing)}; the metadata is damaged"
        )
    size = _positive_int(dcfg["input_size"], "data_cfg input_size", path)
    chans = _positive_int(dcfg["in_chans"], "data_cfg in_chans", path)
    mean = _numbers(dcfg["mean"], "data_cfg mean", path, chans)
    std = _numbers(dcfg["std"], "data_cfg std", path, chans, positive=True)
    crop = dcfg.get("crop_pct", 1.0)
    if isinstance(crop, bool) or not isinstance(crop, numbers.Real) or not 0 < float(crop) <= 1:
        raise CheckpointError(f"checkpoint {path}: data_cfg crop_pct is {crop!r}, not a number in (0, 1]")
    for key, allowed in (("interpolation", None), ("dataset", None), ("input_space", ("RGB", "BGR"))):
        v = dcfg.get(key)
        if v is not None and (not isinstance(v, str) or allowed and v not in allowed):
            raise CheckpointError(f"checkpoint {path}: data_cfg {key} is {v!r}; the metadata is damaged")
    rng = dcfg.get("input_range")
    if rng is not None:
        lo, hi = _numbers(rng, "data_cfg input_range", path, 2)
        if not lo < hi:
            raise CheckpointError(f"checkpoint {path}: data_cfg input_range {rng!r} is empty")
    return D.InputConfig.from_dict(
        {**dcfg, "input_size": size, "in_chans": chans, "mean": mean, "std": std, "crop_pct": float(crop)}
    )


def _from_weights(model_name: str, weights: str) -> tuple[InceptionBase, D.InputConfig, list[str]]:
    """A weight entry (classes and channels from the entry) or a weights file of ``model_name``."""
    get_model_builder(model_name)  # an unknown name is the error to report, not the file
    if get_weight_entry(model_name, weights) is not None:
        model = create_model(model_name, weights=weights, new_head_ok=False)
    else:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(
                f"weights {weights!r} is neither a file nor a weight entry of {model_name}"
            )
        obj = load_file(path)
        meta = _safetensors_meta(path) if is_safetensors(path) else obj
        if isinstance(meta, Mapping) and "model_name" in meta:  # a training checkpoint
            model, _, icfg, classes = _from_checkpoint(path, obj, model_name)
            return model, icfg, classes
        source = f"weights {weights}"
        sd = extract_state_dict(obj, source)
        model = create_model(
            model_name, num_classes=_classifier_size(sd, source), in_chans=_first_conv_chans(sd, source),
            weights=weights, new_head_ok=False,
        )  # fmt: skip
    classes = [str(c) for c in model.default_cfg.get("classes") or []]  # type: ignore[attr-defined]
    return model, D.InputConfig.from_model(model), classes


def _classifier_size(sd: Mapping[str, torch.Tensor], source: str = "these weights") -> int:
    for key in CLASSIFIER_KEYS:
        if key in sd and sd[key].dim() == 2:
            return int(sd[key].shape[0])
    raise CheckpointError(f"cannot tell the number of classes of {source} (no classifier found)")


def _first_conv_chans(sd: Mapping[str, torch.Tensor], source: str = "these weights") -> int:
    for v in sd.values():
        if v.dim() == 4:
            return int(v.shape[1])
    raise CheckpointError(f"cannot tell the input channels of {source} (no conv found)")
