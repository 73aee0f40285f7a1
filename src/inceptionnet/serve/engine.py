"""The model a server runs, built once: ``open_engine(ModelSource, ...) -> Engine`` (``load_engine``:
the same from the command's flags).

An ``Engine`` turns uploaded bytes into the model's input with the project's own reader and
transform (``data.decode_image``, ``read_image``'s reader on bytes, + ``data.eval_transform``, as ``predict`` uses them), checking the
image's size and its resize from its header before anything is decoded (``data.check_image_size``:
``--max-pixels``, ``--max-side``) and opening only ``data.IMAGE_FORMATS``, and runs batches on the fast path
(``deploy.fast.optimize_for_inference``) or, for ``--onnx``, in an ONNX Runtime session: both opened by
``checkpoint.open_for_inference``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .. import data as D
from ..data.images import ImageTooLargeError
from ..errors import ImageReadError, NonFiniteError, UsageError
from .batching import BatchError

if TYPE_CHECKING:
    from ..checkpoint import ModelSource

# the fast path is checked and timed on a batch of this many (at most --max-batch): larger batches only
# make a server start slower (googlenet at 224: ~1 s per candidate run on 2 cores)
EXAMPLE_BATCH = 8


__all__ = ["EXAMPLE_BATCH", "Engine", "ImageTooLargeError", "load_engine", "open_engine"]


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
    max_side: int | None = None  # the long side after resizing (None: data.MAX_RESIZED_SIDE)

    def __post_init__(self) -> None:
        if self.transform is None:
            self.transform = D.eval_transform(self.icfg, self.icfg.in_chans, native_size=-1)

    def decode(self, raw: bytes, filename: str, invert: bool = False) -> Tensor:
        """Uploaded bytes -> the model's C x H x W input. ``ImageTooLargeError`` when the header declares
        more than ``max_pixels`` or a shape whose resize is over ``max_side`` / ``max_pixels`` (checked
        before decoding: a decompression bomb is never expanded, a long strip never resized),
        ``ImageReadError`` naming ``filename`` for anything unreadable or not in ``data.IMAGE_FORMATS``."""
        return self.transform(self.read(raw, filename, invert))

    def read(self, raw: bytes, filename: str, invert: bool = False) -> Tensor:
        """Uploaded bytes -> uint8 C x H x W as ``data.read_image`` reads a file (``invert`` as
        ``predict --invert``)."""
        if not raw:
            raise ImageReadError(f"cannot read image {filename}: the upload is empty")
        x = D.decode_image(
            raw, self.icfg.in_chans, name=filename, resize_to=D.resize_target(self.transform),
            limits=D.ImageLimits(self.max_pixels, self.max_side),
        )  # fmt: skip
        return 255 - x if invert else x

    def probabilities(self, x: Tensor) -> Tensor:
        """Softmax of one batch; ``NonFiniteError`` when the model's output is NaN/inf, ``BatchError``
        when it is not one row of class scores per image (an exported file whose graph lies)."""
        with torch.inference_mode():
            logits = torch.as_tensor(self.run(x)).float().cpu()
        n, c = len(x), len(self.classes)
        if logits.ndim != 2 or logits.shape != (n, c):
            rows = logits.ndim == 2 and len(logits) != n
            got = f"{len(logits)} rows" if rows else f"shape {tuple(logits.shape)}"
            raise BatchError(
                f"the model returned {got} for a batch of {n} (expected {n} x {c}: one row of {c} "
                "class scores per image)"
            )
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
    max_side: int | None = None,
) -> Engine:
    """``open_engine`` on the model ``serve``'s flags name (``--checkpoint | --model --weights | --onnx``)."""
    from ..checkpoint import ModelSource

    source = ModelSource.from_flags(checkpoint, model_name, weights, onnx, exported_verb="serves")
    return open_engine(
        source, backend=backend, dtype=dtype, max_batch=max_batch, device=device, allow_nan=allow_nan,
        max_pixels=max_pixels, calibration=calibration, max_side=max_side,
    )  # fmt: skip


def open_engine(
    source: ModelSource,
    *,
    backend: str = "auto",
    dtype: str = "fp32",
    max_batch: int = 32,
    device: str | torch.device = "cpu",
    allow_nan: bool = False,
    max_pixels: int = 16_000_000,
    calibration: str | None = None,
    max_side: int | None = None,
) -> Engine:
    """The model built once (see the module docstring); every error is a one-line user error."""
    from ..checkpoint import open_for_inference

    if source.kind == "exported":
        return _exported_engine(source, backend, dtype, max_pixels, max_side)
    dtypes = dtype_choices()
    if dtype not in dtypes:
        raise UsageError(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    p = open_for_inference(
        source, device, backend=backend, dtype=dtype, calibration=calibration,
        batch=min(max_batch, EXAMPLE_BATCH), allow_nan=allow_nan,
    )  # fmt: skip
    return Engine(
        p.model_name, source.id(), p.input_config, p.classes, p, p.backend, dtype, model=p.module,
        max_pixels=max_pixels, max_side=max_side,
    )  # fmt: skip


def _exported_engine(
    source: ModelSource, backend: str, dtype: str, max_pixels: int, max_side: int | None
) -> Engine:
    """``--onnx FILE``: an ONNX Runtime session (on the CPU) with the file's own preprocessing metadata."""
    from ..checkpoint import open_for_inference

    if backend not in ("auto", "onnxruntime") or dtype != "fp32":
        raise UsageError("--onnx runs in ONNX Runtime, fp32: drop --backend / --dtype")
    p = open_for_inference(source, "cpu")
    if p.fixed_batch is not None:
        raise UsageError(
            f"--onnx {source.path} was exported with a fixed batch of {p.fixed_batch}; the server batches "
            "requests: export it with a dynamic batch (the default of 'inceptionnet export')"
        )
    return Engine(
        p.model_name, source.id(), p.input_config, p.classes, p, p.backend, p.dtype, max_pixels=max_pixels,
        max_side=max_side,
    )  # fmt: skip
