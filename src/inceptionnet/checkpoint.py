"""A model ready for inference from what a user has: a training checkpoint of this project (``.pt``
or ``.safetensors`` with its metadata), or a model name with a weight entry or a weights file.

``load_for_inference`` is what eval, predict, export and serve share: it returns the model in eval
mode, its name, how to prepare its inputs (``data.InputConfig``) and its class names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from . import data as D
from .errors import CheckpointError
from .fileio import load_file
from .models import InceptionBase, create_model, fit_state_dict, get_model_builder, get_weight_entry
from .models._builder import extract_state_dict


def _safetensors_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    out: dict[str, Any] = dict(meta)
    for key in ("model_kwargs", "classes", "data_cfg"):
        if key in out:
            out[key] = json.loads(out[key])
    return out


def load_for_inference(
    checkpoint: str | None, model_name: str | None, weights: str | None, device: str = "cpu"
) -> tuple[InceptionBase, str, D.InputConfig, list[str]]:
    """(model in eval mode, model name, how to prepare its inputs, class names) from ``--checkpoint
    FILE`` or ``--model NAME --weights ENTRY|FILE`` (a training checkpoint given as ``--weights`` is
    read as a checkpoint, so its data config is used)."""
    if checkpoint:
        path = Path(checkpoint)
        model, name, icfg, classes = _from_checkpoint(path, load_file(path), model_name)
    elif model_name:
        if not weights:
            raise ValueError("--model needs --weights (an entry name or a file), or use --checkpoint")
        name = model_name
        model, icfg, classes = _from_weights(model_name, weights)
    else:
        raise ValueError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE")
    if not classes:
        classes = [str(i) for i in range(model.num_classes)]
    return model.to(device).eval(), name, icfg, classes


def _from_checkpoint(
    path: Path, obj: Any, model_name: str | None
) -> tuple[InceptionBase, str, D.InputConfig, list[str]]:
    """A training checkpoint: the model, its data config and classes are in its metadata."""
    meta = _safetensors_meta(path) if path.suffix == ".safetensors" else obj
    if not isinstance(meta, dict) or "model_name" not in meta:
        raise CheckpointError(
            f"{path} does not say which model it holds (no model_name); use --model NAME --weights {path}"
        )
    name = str(meta["model_name"])
    if model_name and model_name != name:
        raise CheckpointError(f"{path} is a {name} checkpoint, not {model_name}")
    sd = extract_state_dict(obj, f"checkpoint {path}")
    classes = [str(c) for c in meta.get("classes") or []]
    dcfg = meta.get("data_cfg") or {}
    kwargs = dict(meta.get("model_kwargs") or {})
    num_classes = len(classes) or _classifier_size(sd)
    in_chans = int(dcfg.get("in_chans") or _first_conv_chans(sd))
    model = get_model_builder(name)(num_classes=num_classes, in_chans=in_chans, **kwargs)
    assert isinstance(model, InceptionBase)
    fit_state_dict(model, sd, source=f"checkpoint {path}")
    icfg = D.InputConfig.from_dict(dcfg) if dcfg else D.InputConfig.from_model(model)
    return model, name, icfg, classes


def _from_weights(model_name: str, weights: str) -> tuple[InceptionBase, D.InputConfig, list[str]]:
    """A weight entry (classes and channels from the entry) or a weights file of ``model_name``."""
    get_model_builder(model_name)  # an unknown name is the error to report, not the file
    if get_weight_entry(model_name, weights) is not None:
        model = create_model(model_name, weights=weights)
    else:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(
                f"weights {weights!r} is neither a file nor a weight entry of {model_name}"
            )
        obj = load_file(path)
        if isinstance(obj, dict) and "model_name" in obj:
            model, _, icfg, classes = _from_checkpoint(path, obj, model_name)
            return model, icfg, classes
        sd = extract_state_dict(obj, f"weights {weights}")
        model = create_model(
            model_name, num_classes=_classifier_size(sd), in_chans=_first_conv_chans(sd), weights=weights
        )
    classes = [str(c) for c in model.default_cfg.get("classes") or []]  # type: ignore[attr-defined]
    return model, D.InputConfig.from_model(model), classes


def _classifier_size(sd: dict[str, torch.Tensor]) -> int:
    for key in ("fc.weight", "last_linear.weight", "classif.weight", "classifier.weight", "logits.weight"):
        if key in sd:
            return int(sd[key].shape[0])
    raise CheckpointError("cannot tell the number of classes of these weights (no classifier found)")


def _first_conv_chans(sd: dict[str, torch.Tensor]) -> int:
    for v in sd.values():
        if v.dim() == 4:
            return int(v.shape[1])
    raise CheckpointError("cannot tell the input channels of these weights (no conv found)")
