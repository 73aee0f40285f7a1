"""The model a server runs, built once: ``load_engine(...) -> Engine``.

An ``Engine`` turns uploaded bytes into the model's input with the project's own reader and
transform (``data.decode_image``, ``read_image``'s reader on bytes, + ``data.eval_transform``, as ``predict`` uses them), checking the
pixel count from the image header before anything is decoded, and runs batches on the fast path
(``deploy.fast.optimize_for_inference``) or, for ``--onnx``, in an ONNX Runtime session.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import data as D
from ..errors import ImageReadError, NonFiniteError
from ..fileio import sha256_of

# the fast path is checked and timed on a batch of this many (at most --max-batch): larger batches only
# make a server start slower (googlenet at 224: ~1 s per candidate run on 2 cores)
EXAMPLE_BATCH = 8


class ImageTooLargeError(ImageReadError):
    """An image whose header declares more pixels than the server's --max-pixels."""


def dtype_choices() -> dict[str, torch.dtype]:
    """``--dtype`` names -> what ``optimize_for_inference(dtype=...)`` takes (``deploy.fast.DTYPES``)."""
    from ..deploy.fast import DTYPES

    return dict(DTYPES)


def backend_choices() -> tuple[str, ...]:
    from ..deploy.fast import BACKENDS

    return tuple(BACKENDS)


@dataclass
class Engine:
    """What a server needs of its model. ``model``: the eager module (for Grad-CAM and the branch
    view; None for an ONNX file); ``run``: N x C x H x W float -> N x classes logits."""

    name: str
    weights_id: str
    icfg: D.InputConfig
    classes: list[str]
    run: Callable[[Tensor], Tensor]
    backend: str
    dtype: str
    model: nn.Module | None = None
    max_pixels: int = 16_000_000
    transform: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.transform is None:
            self.transform = D.eval_transform(self.icfg, self.icfg.in_chans, native_size=-1)

    def decode(self, raw: bytes, filename: str, invert: bool = False) -> Tensor:
        """Uploaded bytes -> the model's C x H x W input. ``ImageTooLargeError`` when the header declares
        more than ``max_pixels`` (checked before decoding: a decompression bomb is never expanded),
        ``ImageReadError`` naming ``filename`` for anything unreadable."""
        return self.transform(self.read(raw, filename, invert))

    def read(self, raw: bytes, filename: str, invert: bool = False) -> Tensor:
        """Uploaded bytes -> uint8 C x H x W as ``data.read_image`` reads a file (``invert`` as
        ``predict --invert``)."""
        if not raw:
            raise ImageReadError(f"cannot read image {filename}: the upload is empty")
        self.check_pixels(raw, filename)
        x = D.decode_image(raw, self.icfg.in_chans, name=filename)
        return 255 - x if invert else x

    def check_pixels(self, raw: bytes, filename: str) -> None:
        """The header's width x height against ``max_pixels``; PIL reads only the header here."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(raw)) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - not an image PIL knows: read_image says so in its words
            return
        if w * h > self.max_pixels:
            raise ImageTooLargeError(
                f"image {filename} is {w}x{h} = {w * h:,} pixels, over this server's limit of "
                f"{self.max_pixels:,} (--max-pixels); downscale it"
            )

    def probabilities(self, x: Tensor) -> Tensor:
        """Softmax of one batch; ``NonFiniteError`` when the model's output is NaN/inf."""
        with torch.inference_mode():
            logits = torch.as_tensor(self.run(x)).float().cpu()
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteError(
                "the model's output is not finite (NaN/inf): its weights or the input overflow"
            )
        return logits.softmax(dim=1)

    def describe(self) -> dict[str, Any]:
        from .explain import default_block, four_branch_blocks

        blocks = four_branch_blocks(self.model) if self.model is not None else []
        return {
            "name": self.name, "weights": self.weights_id, "backend": self.backend, "dtype": self.dtype,
            "input": self.icfg.to_dict(), "classes": list(self.classes),
            "explain": self.model is not None, "blocks": blocks,
            "default_block": default_block(blocks),
        }  # fmt: skip


def weights_id(checkpoint: str | None, model_name: str | None, weights: str | None, onnx: str | None) -> str:
    """How a response names the weights: a weight entry by name (and its sha256 prefix), a file by
    name and the first 12 hex digits of its sha256."""
    from ..models import get_weight_entry

    if model_name and weights:
        entry = get_weight_entry(model_name, weights)
        if entry is not None:
            return f"{weights}" + (f" sha256:{entry.sha256[:12]}" if entry.sha256 else "")
    path = Path(onnx or checkpoint or weights or "")
    return f"{path.name} sha256:{sha256_of(path)[:12]}"


def load_engine(
    *,
    checkpoint: str | None = None,
    model_name: str | None = None,
    weights: str | None = None,
    onnx: str | None = None,
    backend: str = "auto",
    dtype: str = "fp32",
    max_batch: int = 32,
    device: str | torch.device = "cpu",
    allow_nan: bool = False,
    max_pixels: int = 16_000_000,
    calibration: str | None = None,
) -> Engine:
    """The model built once (see the module docstring); every error is a one-line user error."""
    if onnx:
        return _onnx_engine(onnx, checkpoint, model_name, weights, backend, dtype, max_pixels)
    from ..checkpoint import load_for_inference
    from ..deploy.fast import optimize_for_inference

    dtypes = dtype_choices()
    if dtype not in dtypes:
        raise ValueError(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    model, name, icfg, classes = load_for_inference(
        checkpoint, model_name, weights, device, allow_nan=allow_nan
    )
    example = torch.randn(min(max_batch, EXAMPLE_BATCH), icfg.in_chans, icfg.input_size, icfg.input_size)
    # int8: the images it is calibrated on
    extra: dict[str, Any] = {"calibration": calibration} if calibration else {}
    fast = optimize_for_inference(model, example.to(device), backend=backend, dtype=dtypes[dtype], **extra)
    return Engine(
        name, weights_id(checkpoint, model_name, weights, None), icfg, classes,
        lambda x: fast(x.to(device)), fast.backend, dtype, model=model, max_pixels=max_pixels,
    )  # fmt: skip


def _onnx_engine(
    onnx: str, checkpoint: str | None, model_name: str | None, weights: str | None, backend: str, dtype: str,
    max_pixels: int,
) -> Engine:  # fmt: skip
    """``--onnx FILE``: an ONNX Runtime session with the file's own preprocessing metadata."""
    from ..deploy.export import open_onnx, ort_runner

    for flag, value in (("--checkpoint", checkpoint), ("--model", model_name), ("--weights", weights)):
        if value:
            raise ValueError(f"--onnx serves the exported file on its own; drop {flag}")
    if backend not in ("auto", "onnxruntime") or dtype != "fp32":
        raise ValueError("--onnx runs in ONNX Runtime, fp32: drop --backend / --dtype")
    path = Path(onnx)
    f = open_onnx(path)
    if f.fixed_batch is not None:
        raise ValueError(
            f"--onnx {path} was exported with a fixed batch of {f.fixed_batch}; the server batches requests: "
            "export it with a dynamic batch (the default of 'inceptionnet export')"
        )
    meta, icfg, classes = f.meta, f.icfg, f.classes
    run = ort_runner(f.session)
    name = str(meta.get("model_name") or path.stem)
    return Engine(
        name,
        weights_id(None, None, None, onnx),
        icfg,
        classes,
        run,
        "onnxruntime",
        "fp32",
        max_pixels=max_pixels,
    )
