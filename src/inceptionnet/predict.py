"""``inceptionnet predict``: top-k classes of image files, from a training checkpoint or named weights.

    inceptionnet predict --checkpoint runs/x/best.pt shirt.png boot.jpg
    inceptionnet predict --model googlenet_small --weights fashion_mnist --json img.png

Images of any mode and size are converted to what the model expects (grayscale <-> RGB, 16-bit,
palette, CMYK; resized and center-cropped). An unreadable file prints ``error: cannot read image ...``;
the other images are still predicted and the exit code is 2 at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import data as D
from .engine import flush_denormal
from .errors import CheckpointError, ImageReadError
from .layers import InceptionBase
from .registry import create_model, get_model_builder
from .weights import extract_state_dict, fit_state_dict, get_weight_entry, load_file


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint | --model [--weights]: the options eval and predict share."""
    p.add_argument(
        "--checkpoint", default=None, help="a training checkpoint (checkpoint.pt / best.pt / .safetensors)"
    )
    p.add_argument("--model", default=None, help="model name, with --weights (entry name or file)")
    p.add_argument(
        "--weights", default=None, help="weight entry (e.g. fashion_mnist) or .pth/.safetensors file"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


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
) -> tuple[InceptionBase, D.InputConfig, list[str]]:
    """The model in eval mode, how to prepare its inputs, and its class names."""
    if checkpoint:
        path = Path(checkpoint)
        obj = load_file(path)
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
        if dcfg:
            icfg = D.InputConfig.from_dict(dcfg)
        else:
            icfg = _cfg_from_model(model)
    elif model_name:
        if not weights:
            raise ValueError("--model needs --weights (an entry name or a file), or use --checkpoint")
        get_model_builder(model_name)  # an unknown name is the error to report, not the file
        if get_weight_entry(model_name, weights) is not None:
            model = create_model(model_name, weights=weights)  # classes and channels from the entry
        else:
            if not Path(weights).exists():
                raise FileNotFoundError(
                    f"weights {weights!r} is neither a file nor a weight entry of {model_name}"
                )
            obj = load_file(weights)
            if isinstance(obj, dict) and "model_name" in obj:  # a training checkpoint: use its data config
                return load_for_inference(weights, model_name, None, device)
            sd = extract_state_dict(obj, f"weights {weights}")
            model = create_model(
                model_name, num_classes=_classifier_size(sd), in_chans=_first_conv_chans(sd), weights=weights
            )
        classes = list(model.default_cfg.get("classes") or [])  # type: ignore[call-overload]
        icfg = _cfg_from_model(model)
    else:
        raise ValueError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE")
    if not classes:
        classes = [str(i) for i in range(model.num_classes)]
    return model.to(device).eval(), icfg, classes


def _cfg_from_model(model: InceptionBase) -> D.InputConfig:
    cfg = model.default_cfg
    return D.InputConfig(
        int(cfg["input_size"][2]), model.in_chans, tuple(cfg["mean"]), tuple(cfg["std"]),  # type: ignore[index, call-overload]
        float(cfg.get("crop_pct", 1.0)), str(cfg.get("interpolation", "bilinear")),  # type: ignore[arg-type]
        None, str(cfg.get("input_space", "RGB")), tuple(cfg.get("input_range", (0.0, 1.0))),
    )  # fmt: skip


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


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Classify image files.", add_help=add_help)
    p.add_argument("images", nargs="+", help="image files (any format PIL reads)")
    add_model_args(p)
    p.add_argument("--onnx", default=None, help="an exported .onnx file, run with ONNX Runtime")
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image")
    p.add_argument(
        "--invert",
        action="store_true",
        help="invert gray levels (dark garments on white, for Fashion-MNIST models)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def preprocess(path: str, icfg: D.InputConfig, transform: Any, invert: bool = False) -> torch.Tensor:
    x = D.read_image(path, icfg.in_chans)
    if invert:
        x = 255 - x
    return transform(x)


def main(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    if args.onnx:
        from .export import predict_onnx

        return predict_onnx(args)
    model, icfg, classes = load_for_inference(args.checkpoint, args.model, args.weights, args.device)
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    with flush_denormal():
        results = predict_files(
            args.images, lambda x: model(x.to(args.device)), icfg, transform, classes, args.topk, args.invert
        )
    return report(results, args.json)


def predict_files(
    paths: Sequence[str],
    run: Any,
    icfg: D.InputConfig,
    transform: Any,
    classes: Sequence[str],
    topk: int,
    invert: bool = False,
) -> list[dict[str, Any]]:
    """Top-k per file; unreadable files get an ``error`` entry instead."""
    results: list[dict[str, Any]] = []
    k = min(topk, len(classes))
    for path in paths:
        try:
            x = preprocess(path, icfg, transform, invert)
        except ImageReadError as e:
            results.append({"path": path, "error": str(e)})
            continue
        with torch.no_grad():
            logits = torch.as_tensor(run(x.unsqueeze(0))).float()
        probs = logits.softmax(dim=1)[0]
        top = probs.topk(k)
        results.append({
            "path": path,
            "top": [{"label": classes[i], "index": int(i), "prob": float(p)} for p, i in zip(top.values, top.indices, strict=True)],
        })  # fmt: skip
    return results


def report(results: list[dict[str, Any]], as_json: bool) -> int:
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            print(f"error: {r['error']}", file=sys.stderr)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "top" in r:
                best = ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"])
                print(f"{r['path']}: {best}")
    return 2 if failed else 0
