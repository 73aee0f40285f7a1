"""Low-precision inference: dtype names, calibration images, top-1 agreement, ONNX Runtime QDQ int8.

* ``parse_dtype`` (from ``deploy.dtypes``, the one dtype table): ``torch.float32`` / ``torch.bfloat16`` /
  ``torch.qint8`` or their names (``"fp32"``, ``"bf16"``, ``"int8"``, ...) or ``"auto"``, to one
  canonical form.
* ``calibration_images``: the images int8 is calibrated on and bf16/int8 are checked on (top-1
  agreement with eager fp32): a tensor, a DataLoader (or any iterable of batches or (images, labels)
  pairs), or a data set name with a split, ``"fashion_mnist:train"``, prepared as the model expects
  (``data.eval_transform``) at the example input's size; floats only (uint8 pixels would calibrate
  int8 on the wrong range) and at least ``MIN_AGREEMENT_IMAGES`` (16, ``deploy.verify``) of them.
* ``quantize_onnx_qdq``: ONNX Runtime static post-training quantization (``quantize_static``), QDQ
  format, per-channel int8 weights, uint8 activations (U8S8: what ORT's docs recommend on x86 with
  VNNI), MinMax calibration on those images, after ORT's ``quant_pre_process``. On an x86 CPU without
  VNNI (AVX2 / AVX-512F only) ORT's U8S8 kernels use ``vpmaddubsw``, whose int16 sums saturate, so the
  weights are quantized to 7 bits there (``reduce_range``, ORT's documented remedy; ``needs_reduce_range``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import FastInferenceError, UsageError, first_line
from .dtypes import DTYPE_NAMES, dtype_suffix, parse_dtype  # the names of deploy.dtypes, kept here too
from .verify import MIN_AGREEMENT_IMAGES, check_agreement_count, top1_agreement

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "DTYPE_NAMES",
    "MIN_AGREEMENT_IMAGES",
    "calibration_images",
    "dtype_suffix",
    "needs_reduce_range",
    "parse_dtype",
    "quantize_onnx_qdq",
    "top1_agreement",
]

DEFAULT_CALIBRATION_SIZE = 256  # NNCF's default subset is 300; 256 images calibrate in seconds here


def _from_dataset(spec: str, model: nn.Module, example: Tensor, limit: int) -> Tensor:
    from .. import data as D

    name, _, split = spec.partition(":")
    split = split or "train"
    if name not in D.DATASETS or name == "imagefolder":
        raise UsageError(
            f"calibration data set {spec!r}: use NAME:SPLIT with NAME one of "
            f"{', '.join(d for d in D.DATASETS if d != 'imagefolder')} (or pass a tensor / DataLoader)"
        )
    if split not in D.SPLITS:
        raise UsageError(f"calibration data set {spec!r}: split must be one of {', '.join(D.SPLITS)}")
    x, y, classes = D.load_arrays(name, split, None, 0)
    # an even spread over the split (a fixed seed), not its first images: every class is represented
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:limit]
    icfg = D.InputConfig.from_model(model) if hasattr(model, "default_cfg") else None
    if icfg is None:
        raise UsageError("a calibration data set name needs a model of this project (its input config)")
    icfg.input_size = int(example.shape[-1])
    images = D.TensorImages(x[idx], y[idx], classes)
    tf = D.eval_transform(icfg, int(images.images.shape[1]), int(images.images.shape[-1]))
    return torch.stack([tf(images.images[i]) for i in range(len(idx))])


def calibration_images(
    calibration: Tensor | Iterable[Any] | str, model: nn.Module, example: Tensor, limit: int
) -> Tensor:
    """Up to ``limit`` model-ready images (N x C x H x W, float, on the CPU) from ``calibration``:
    floating point (uint8 pixels are not what the model takes: they would calibrate int8 on the
    wrong range), finite, shaped like ``example``, and at least ``MIN_AGREEMENT_IMAGES`` of them
    (they are also what the top-1 agreement is measured on)."""
    fix = "raise calibration_size (--calibration-size) or give more images"
    if not isinstance(limit, int) or limit < MIN_AGREEMENT_IMAGES:
        raise UsageError(
            f"calibration_size (--calibration-size) is {limit}: int8 is calibrated and its top-1 agreement "
            f"checked on at least {MIN_AGREEMENT_IMAGES} images"
        )
    if isinstance(calibration, str):
        x = _from_dataset(calibration, model, example, limit)
    elif isinstance(calibration, Tensor):
        x = calibration[:limit]
    else:
        x = _from_batches(calibration, limit)
    if not x.is_floating_point():
        raise UsageError(
            f"calibration images must be float tensors prepared as the model takes them (x.float() / 255, "
            f"then normalized), got {str(x.dtype).removeprefix('torch.')}"
        )
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(example.shape[1:]):
        raise UsageError(
            f"calibration images must be N x {' x '.join(map(str, example.shape[1:]))} like the example "
            f"input, got {tuple(x.shape)}"
        )
    check_agreement_count(len(x), "calibration images", fix)
    if not bool(torch.isfinite(x).all()):
        raise UsageError("calibration images must be finite: they hold NaN or infinity")
    return x.detach().float().cpu().contiguous()


def _from_batches(calibration: Iterable[Any], limit: int) -> Tensor:
    """The first ``limit`` images of a DataLoader (batches, or (images, labels) pairs)."""
    parts, n = [], 0
    for batch in calibration:
        xb = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(xb, Tensor):
            raise UsageError(
                f"calibration batches must be tensors or (images, labels), got {type(xb).__name__}"
            )
        parts.append(xb[: limit - n])
        n += len(parts[-1])
        if n >= limit:
            break
    if not parts:
        raise UsageError("the calibration loader yielded no batches")
    if len({p.dtype for p in parts}) > 1:
        raise UsageError(f"calibration batches of different dtypes: {sorted({str(p.dtype) for p in parts})}")
    return torch.cat(parts)


class _Reader:
    """ORT's CalibrationDataReader protocol: one batch of 8 images per ``get_next``."""

    def __init__(self, images: Tensor, input_name: str, batch: int = 8) -> None:
        self._it = iter([{input_name: b.numpy()} for b in images.split(batch)])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # called by some ORT versions; one pass is all MinMax needs
        pass


def needs_reduce_range(flags: Iterable[str] | None = None) -> bool:
    """True on an x86 CPU with AVX2 but no int8 dot-product unit (VNNI / AMX-INT8): there ORT's U8S8
    kernels (``vpmaddubsw``) saturate on full 8-bit weights (the shipped Fashion-MNIST model: top-1
    agreement 0.980 vs 0.995 with 7-bit weights on 200 calibration images, AVX2-only AMD EPYC Zen 3)."""
    from .probe import cpu_info

    have = set(cpu_info()["flags"] if flags is None else flags)
    return "avx2" in have and not have & {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantize_onnx_qdq(src: str | Path, dst: str | Path, images: Tensor, input_name: str = "input") -> None:
    """``src`` (fp32 ONNX) -> ``dst``: static QDQ int8, per-channel weights, calibrated on ``images``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(images, input_name)
    with tempfile.TemporaryDirectory(prefix="inceptionnet-qdq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=needs_reduce_range(),
            )  # fmt: skip
        except Exception as e:
            raise FastInferenceError(f"ONNX Runtime int8 quantization failed: {first_line(e)}") from e
