"""Images from files or bytes: ``read_image`` / ``decode_image`` (PIL, loaded on first use) as an image
viewer shows them (EXIF orientation, first frame, transparency over white, 16-bit and float ranges),
with the guards checked before anything is allocated: the file size (``MAX_IMAGE_BYTES``), the
formats PIL may open (``IMAGE_FORMATS``: none that runs another program), and ``check_image_size``,
the one check of how large an image and every resize of it may be (``ImageLimits``: the decoded pixel
count, the long side after resizing, the pixels a resize writes); and the ``note:`` lines the data
code prints once.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import Tensor

from ..errors import ImageReadError, UsageError, first_line

MAX_IMAGE_PIXELS = 64_000_000  # pixels of a decoded image (its header), and of any resize of it
MAX_RESIZED_SIDE = 16_384  # the long side of an image resized for a model (a 1 x 100,000 strip: 3.2 M)
MAX_IMAGE_BYTES = 256 * 2**20  # file-size guard, checked with stat before a file is read whole
_PIL_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL's own default
BACKGROUND = 255  # transparent pixels are shown over white, as a web page or a document shows them
# torchvision's IMG_EXTENSIONS and the other formats PIL reads that image folders hold
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm",
    ".tif", ".tiff", ".webp",
)  # fmt: skip
# the formats PIL is asked to open (``Image.open(formats=...)``): those of IMAGE_EXTENSIONS (PPM
# covers PGM, PBM, PNM and PFM; JPEG covers MPO); never EPS, which PIL hands to Ghostscript
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
FORMATS_ENV = "INCEPTIONNET_IMAGE_FORMATS"  # more PIL format names, comma-separated (e.g. ICO,TGA)
EXTERNAL_PROGRAM_FORMATS = {"EPS": "Ghostscript"}  # refused even when named in FORMATS_ENV

# how an image is resized: a short side (torchvision's Resize(int)) or an exact (height, width)
ResizeTo: TypeAlias = int | tuple[int, int]


class ImageTooLargeError(ImageReadError):
    """An image over ``ImageLimits``: refused from its header, before it is decoded or resized."""


@dataclass(frozen=True)
class ImageLimits:
    """How large an image may be (``check_image_size``). ``max_pixels``: the decoded image, and the
    pixels a resize writes (its output and its intermediate); ``max_side``: the long side after
    resizing. None: the module's ``MAX_IMAGE_PIXELS`` / ``MAX_RESIZED_SIDE`` when used. The flags
    ``--max-pixels`` / ``--max-side`` of predict, embed, eval, explain, fid, isc and serve set them."""

    max_pixels: int | None = None
    max_side: int | None = None

    def __post_init__(self) -> None:
        for flag, v in (("--max-pixels", self.max_pixels), ("--max-side", self.max_side)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UsageError(f"{flag} must be a whole number of at least 1, got {str(v)[:40]}")

    @property
    def pixels(self) -> int:
        return MAX_IMAGE_PIXELS if self.max_pixels is None else self.max_pixels

    @property
    def side(self) -> int:
        return MAX_RESIZED_SIDE if self.max_side is None else self.max_side


_LIMITS: ContextVar[ImageLimits | None] = ContextVar("inceptionnet_image_limits", default=None)


def current_limits(limits: ImageLimits | None = None) -> ImageLimits:
    """``limits``, else those set by ``image_limits(...)`` around this call, else the defaults."""
    return limits or _LIMITS.get() or ImageLimits()


@contextlib.contextmanager
def image_limits(limits: ImageLimits) -> Iterator[ImageLimits]:
    """Every image read or resized inside the block, without limits of its own, under ``limits``
    (how a command's ``--max-pixels`` / ``--max-side`` reach a data set's or a metric's reads)."""
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


def resized_size(height: int, width: int, resize_to: ResizeTo) -> tuple[int, int]:
    """(height, width) of an image resized to ``resize_to``, as torchvision computes it."""
    if not isinstance(resize_to, int):
        return int(resize_to[0]), int(resize_to[1])
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize_to * long / short) if short > 0 else 0
    return (new_long, resize_to) if width <= height else (resize_to, new_long)


def check_image_size(
    width: int, height: int, *, name: str | None = None, resize_to: ResizeTo | None = None,
    limits: ImageLimits | None = None,
) -> tuple[int, int] | None:  # fmt: skip
    """The one size check, before anything is allocated: ``width`` x ``height`` (a header's, or a
    tensor's) against ``limits.pixels``; with ``resize_to``, the resized long side against
    ``limits.side`` and the pixels the resize writes against ``limits.pixels`` (torch and PIL resize
    one axis, then the other: the intermediate is the input's height x the output's width, or the
    other way round). Returns the resized (height, width), or None without ``resize_to``; raises
    ``ImageTooLargeError`` naming ``name`` (a file or upload) and the flag to raise."""
    lim = current_limits(limits)
    what = f"image {name}" if name is not None else "an image"
    if width * height > lim.pixels:
        raise ImageTooLargeError(
            f"cannot read {what}: it is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{lim.pixels:,} (--max-pixels), refused before decoding as a possible decompression bomb; "
            "downscale it or raise --max-pixels"
        )
    if resize_to is None:
        return None
    out_h, out_w = resized_size(height, width, resize_to)
    if max(out_h, out_w) > lim.side:
        raise ImageTooLargeError(
            f"cannot read {what}: it is {width}x{height}, so elongated that resizing it for the model "
            f"would make it {out_w:,}x{out_h:,}, a side over the limit of {lim.side:,} (--max-side); "
            "crop it or raise --max-side"
        )
    work = max(out_h * out_w, height * out_w, out_h * width)
    if work > lim.pixels:
        raise ImageTooLargeError(
            f"cannot read {what}: it is {width}x{height}; resizing it to {out_w}x{out_h} would write "
            f"{work:,} pixels, over the limit of {lim.pixels:,} (--max-pixels); crop it or raise --max-pixels"
        )
    return out_h, out_w


def image_formats(formats: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The PIL formats an image may be opened as: ``formats``, else ``IMAGE_FORMATS`` and those named
    in ``$INCEPTIONNET_IMAGE_FORMATS``. A format that runs another program (EPS: Ghostscript) is
    refused even when named."""
    names = list(formats if formats is not None else IMAGE_FORMATS)
    if formats is None:
        names += [f.strip().upper() for f in os.environ.get(FORMATS_ENV, "").split(",") if f.strip()]
    from PIL import Image

    Image.init()
    for f in names:
        if f.upper() in EXTERNAL_PROGRAM_FORMATS:
            raise UsageError(
                f"image format {f[:20]} is refused: PIL opens it by running "
                f"{EXTERNAL_PROGRAM_FORMATS[f.upper()]} on the file; remove it from {FORMATS_ENV}"
            )
        if f.upper() not in Image.OPEN:
            raise UsageError(
                f"unknown image format {f[:20]} (in {FORMATS_ENV} or formats=); PIL opens "
                f"{', '.join(sorted(set(Image.OPEN) - set(EXTERNAL_PROGRAM_FORMATS)))}"
            )
    return tuple(dict.fromkeys(f.upper() for f in names))


_NOTED: set[str] = set()  # the notes said once per process


def _note(msg: str, once: str | None = None) -> None:
    """One ``note: ...`` line on stderr, from the main process of rank 0 only (not from DataLoader
    workers or other DDP ranks); ``once``: a key, said once per process."""
    if once is not None:
        if once in _NOTED:
            return
        _NOTED.add(once)
    if torch.utils.data.get_worker_info() is not None or os.environ.get("RANK", "0") not in ("", "0"):
        return
    print(f"note: {msg}", file=sys.stderr)


def _read_image_bytes(p: Path) -> bytes:
    """The bytes of an image file, refusing folders, devices, FIFOs and files over MAX_IMAGE_BYTES
    (checked with stat first; then never more than one byte over the limit is read)."""

    def too_big(size: str) -> ImageReadError:
        return ImageReadError(
            f"cannot read image {p}: the file is {size}, over {MAX_IMAGE_BYTES / 2**20:.0f} MiB, the "
            "limit for one image (inceptionnet.data.MAX_IMAGE_BYTES); downscale or recompress it"
        )

    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(f"cannot read image {p}: it is a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"cannot read image {p}: not a regular file (a device, FIFO or socket)")
        if st.st_size > MAX_IMAGE_BYTES:
            raise too_big(f"{st.st_size / 2**20:,.0f} MiB")
        with open(p, "rb") as f:
            raw = f.read(st.st_size + 1)
            if len(raw) > st.st_size:  # it grew since stat, or stat does not know its size (/proc)
                raw += f.read(MAX_IMAGE_BYTES + 1 - len(raw))
    except ImageReadError:
        raise
    except OSError as e:
        if p.is_symlink() and not p.exists():
            raise ImageReadError(
                f"cannot read image {p}: a broken symbolic link (to {os.readlink(p)})"
            ) from None
        raise ImageReadError(f"cannot read image {p}: {e.strerror or e}") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise too_big("larger")
    if not raw:
        raise ImageReadError(f"cannot read image {p}: the file is empty")
    return raw


def read_image(
    path: str | os.PathLike[str], in_chans: int, *, resize_to: ResizeTo | None = None,
    limits: ImageLimits | None = None, formats: tuple[str, ...] | None = None, draft: bool = False,
) -> Tensor:  # fmt: skip
    """A uint8 C x H x W tensor with ``in_chans`` channels from an image file, as an image viewer
    shows it (``image_to_tensor``: EXIF orientation, the first frame of an animation, transparency
    over white, 16-bit and float images from their range).

    Before it is decoded, its header's size goes through ``check_image_size`` (``limits``; with
    ``resize_to``, the resize the caller will make: ``transforms.resize_target(transform)``), and
    only ``image_formats(formats)`` are opened. Anything unreadable raises ``ImageReadError`` naming
    the file: a missing, empty, damaged or unknown file, a folder, a FIFO, a file over
    ``MAX_IMAGE_BYTES``, an image over the limits (``ImageTooLargeError``).

    ``draft`` (with ``resize_to``): a JPEG at least twice the resize is decoded at a reduced scale
    (libjpeg's DCT scaling, 1/2, 1/4 or 1/8: ``draft_size``), never below the resize.
    """
    p = Path(path)
    return decode_image(
        _read_image_bytes(p), in_chans, name=str(p), resize_to=resize_to, limits=limits, formats=formats,
        draft=draft,
    )  # fmt: skip


def _pil_guard(limit: int) -> str:
    """PIL's own decompression-bomb guard: when the user has not set ``Image.MAX_IMAGE_PIXELS``
    themselves, it follows a raised limit and its warning is ignored ("ignore"; ``check_image_size`` says
    it with the flag's name); a limit of their own is kept, its warning an error ("error")."""
    from PIL import Image

    global _PIL_SET
    if Image.MAX_IMAGE_PIXELS not in (_PIL_MAX_IMAGE_PIXELS, _PIL_SET):
        return "error"
    # at least our default: PIL's error (past twice its limit) comes after ours for a lowered limit
    Image.MAX_IMAGE_PIXELS = _PIL_SET = max(limit, MAX_IMAGE_PIXELS)
    return "ignore"


_PIL_SET: int | None = None  # the value _pil_guard last gave PIL's limit


def draft_size(width: int, height: int, resize_to: ResizeTo) -> tuple[int, int]:
    """The (width, height) to ask PIL's ``Image.draft`` for so that the decoded JPEG still covers the
    resize ``resize_to`` in either orientation (EXIF may turn it): libjpeg then picks the largest
    scale 1/2, 1/4 or 1/8 that keeps both sides at least this large (none below twice)."""
    if isinstance(resize_to, int):  # a short side: the same whichever way the picture is turned
        out_h, out_w = resized_size(height, width, resize_to)
        return out_w, out_h
    side = max(int(resize_to[0]), int(resize_to[1]))  # an exact size: its long side both ways
    return side, side


def _open(
    raw: bytes, p: str, formats: tuple[str, ...], lim: ImageLimits, resize_to: ResizeTo | None,
    draft: bool = False,
) -> Any:  # fmt: skip
    """PIL's image of ``raw``, its size checked from the header before its pixels are decoded
    (``draft``: a large JPEG decoded at a reduced scale that still covers ``resize_to``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(raw), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(
            f"cannot read image {p}: too large, refused as a possible decompression bomb ({e}); "
            "downscale it or raise --max-pixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"cannot read image {p}: not an image file PIL recognizes in the accepted formats "
            f"({', '.join(formats)}; {FORMATS_ENV} adds others)"
        ) from None
    w, h = im.size
    check_image_size(w, h, name=p, resize_to=resize_to, limits=lim)
    if draft and resize_to is not None and im.format == "JPEG":
        im.draft(im.mode, draft_size(w, h, resize_to))
    im.load()  # the first frame of an animation or a multi-page file
    return im


def decode_image(
    raw: bytes, in_chans: int, name: str = "upload", *, resize_to: ResizeTo | None = None,
    limits: ImageLimits | None = None, formats: tuple[str, ...] | None = None, draft: bool = False,
) -> Tensor:  # fmt: skip
    """``read_image`` on the bytes of an image file (an upload); errors name the image ``name``."""
    from PIL import Image

    p = name
    if not raw:
        raise ImageReadError(f"cannot read image {p}: it is empty")
    lim, fmts = current_limits(limits), image_formats(formats)
    with warnings.catch_warnings():
        warnings.simplefilter(_pil_guard(lim.pixels), Image.DecompressionBombWarning)  # type: ignore[arg-type]
        # damaged metadata in a picture that decodes ("Corrupt EXIF data", "Tag data larger than
        # file"): viewers show the picture without a word, so do we (a warning would be 2 more lines)
        warnings.simplefilter("ignore", UserWarning)
        try:
            im = _open(raw, p, fmts, lim, resize_to, draft)
        except ImageReadError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError,
            # EOFError, struct.error, IndexError ... on damaged files: each is a damaged file here
            raise ImageReadError(
                f"cannot read image {p}: not a valid image ({first_line(e, limit=120)})"
            ) from None
        try:
            x = image_to_tensor(im, in_chans)
        except Exception as e:  # noqa: BLE001 - a mode or a damaged block that PIL cannot convert
            raise ImageReadError(
                f"cannot read image {p}: its {im.mode} pixels cannot be converted ({first_line(e, limit=120)})"
            ) from None
        if "animated" not in _NOTED and getattr(im, "is_animated", False):
            try:
                frames = f"{int(getattr(im, 'n_frames', 2))} frames"
            except Exception:  # noqa: BLE001 - a damaged later frame: the first one was read
                frames = "several frames"
            _note(f"{p} has {frames} (an animation or pages); the first frame is used, as for every "
                  "such file (said once)", once="animated")  # fmt: skip
    return x


def _has_transparency(im: Any) -> bool:
    palette = getattr(im, "palette", None)
    return bool(
        im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info
        or (im.mode == "P" and palette is not None and palette.mode == "RGBA")
    )  # fmt: skip


def _over_background(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 ``color`` (H x W or H x W x 3) with uint8 ``alpha`` composited over BACKGROUND."""
    a = alpha.astype(np.uint32)
    if color.ndim == 3:
        a = a[..., None]
    out = (color.astype(np.uint32) * a + BACKGROUND * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _integer_range(mode: str, tags: Any, arr: np.ndarray) -> tuple[float, float]:
    """The range an integer image's values are shown from: 16-bit modes 0-65535; a 32-bit ``I``
    image its declared TIFF depth (BitsPerSample <= 16, signed or not), else 0-65535 when its values
    fit (16-bit PNG / PGM data in a 32-bit container), else its own min..max (as viewers stretch
    32-bit data, which has no display range)."""
    if mode.startswith("I;16"):
        return (-32768.0, 32767.0) if mode.endswith("S") else (0.0, 65535.0)
    if tags is not None:
        bits_tag, format_tag = tags.get(258) or (32,), tags.get(339) or (1,)  # BitsPerSample, SampleFormat
        bits = int(bits_tag[0] if isinstance(bits_tag, tuple) else bits_tag)
        signed = int(format_tag[0] if isinstance(format_tag, tuple) else format_tag) == 2
        if bits <= 16:
            return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
        return float(arr.min()), float(arr.max())
    lo, hi = float(arr.min()), float(arr.max())
    return (0.0, 65535.0) if lo >= 0 and hi <= 65535 else (lo, hi)


def _deep_to_gray(im: Any, tags: Any = None) -> np.ndarray:
    """uint8 H x W from an ``I;16*``, ``I`` or ``F`` image, scaled from its range (not clipped):
    integers as ``_integer_range`` says, floats from 0-1 when their values lie in it (the float
    image convention), else from their own min..max; NaN shows as black, +-inf as the ends."""
    arr = np.asarray(im)
    if im.mode == "F":
        a = arr.astype(np.float64)
        finite = np.isfinite(a)
        vals = a[finite]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        if lo >= 0 and hi <= 1 or lo == hi:
            lo, hi = 0.0, 1.0
        a = np.where(np.isnan(a), lo, np.clip(a, lo, hi))
    else:
        a = arr.astype(np.float64)
        lo, hi = _integer_range(im.mode, tags, arr) if arr.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = min(lo, 0.0), max(hi, lo + 1.0)
        a = np.clip(a, lo, hi)
    gray = ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    t = im.info.get("transparency")
    if im.mode != "F" and isinstance(t, int):  # a 16-bit PNG's transparent gray level (tRNS)
        gray = _over_background(gray, np.where(arr == t, 0, 255).astype(np.uint8))
    return gray


def image_to_tensor(im: Any, in_chans: int) -> Tensor:
    """A loaded PIL image as an image viewer shows it, as a uint8 C x H x W tensor of ``in_chans``
    channels (1: gray, 3: RGB, others: the first of RGB repeated).

    - EXIF (or XMP) orientation is applied (``ImageOps.exif_transpose``; a damaged EXIF block is
      ignored, the picture shown as stored);
    - transparency (alpha in LA / RGBA / PA, premultiplied La / RGBa, a palette's or PNG's tRNS
      color) is composited over white (``BACKGROUND``): transparent pixels read as the page behind
      them, never as whatever color the encoder left under alpha 0;
    - ``I;16*``, ``I`` and ``F`` images are scaled from their range to 0-255 (``_deep_to_gray``);
    - every other mode (1, L, P, RGB, RGBX, CMYK, YCbCr, LAB, HSV) is converted by PIL.
    """
    from PIL import Image, ImageOps

    tags = getattr(im, "tag_v2", None)  # a TIFF's bits per sample: on the file's image, not on a copy
    with contextlib.suppress(Exception):  # a damaged EXIF block: shown as stored, as viewers do
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        im = Image.fromarray(_deep_to_gray(im, tags), "L")
    elif _has_transparency(im):
        gray = mode in ("1", "L", "La", "LA")
        arr = np.asarray(im.convert("LA" if gray else "RGBA"))  # straight (not premultiplied) alpha
        color = arr[..., 0] if gray else arr[..., :3]
        im = Image.fromarray(_over_background(color, arr[..., -1]), "L" if gray else "RGB")
    elif mode not in ("L", "RGB"):
        im = im.convert("L" if mode == "1" else "RGB")
    target = "L" if in_chans == 1 else "RGB"
    if im.mode != target:
        im = im.convert(target)
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if in_chans not in (1, 3):
        x = x[:1].expand(in_chans, -1, -1).clone()
    return x
