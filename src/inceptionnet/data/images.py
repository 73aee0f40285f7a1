"""Images from files or bytes: ``read_image`` / ``decode_image`` (PIL, loaded on first use) as an image
viewer shows them (EXIF orientation, first frame, transparency over white, 16-bit and float ranges),
with the file-size and pixel-count guards (``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``), and the
``note:`` lines the data code prints once.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ImageReadError, first_line

MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard: PIL raises beyond 2x this
MAX_IMAGE_BYTES = 256 * 2**20  # file-size guard, checked with stat before a file is read whole
_PIL_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL's own default
BACKGROUND = 255  # transparent pixels are shown over white, as a web page or a document shows them
# torchvision's IMG_EXTENSIONS and the other formats PIL reads that image folders hold
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm",
    ".tif", ".tiff", ".webp",
)  # fmt: skip

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


def read_image(path: str | os.PathLike[str], in_chans: int) -> Tensor:
    """A uint8 C x H x W tensor with ``in_chans`` channels from any image file PIL can read, as an
    image viewer shows it (``image_to_tensor``: EXIF orientation, the first frame of an animation,
    transparency over white, 16-bit and float images from their range).

    Anything unreadable raises ``ImageReadError`` naming the file: a missing, empty, damaged or
    unknown file, a folder, a file over ``MAX_IMAGE_BYTES`` or over ``MAX_IMAGE_PIXELS`` pixels.
    """
    p = Path(path)
    return decode_image(_read_image_bytes(p), in_chans, name=str(p))


def decode_image(raw: bytes, in_chans: int, name: str = "upload") -> Tensor:
    """``read_image`` on the bytes of an image file (an upload); errors name the image ``name``."""
    from PIL import Image, UnidentifiedImageError

    if Image.MAX_IMAGE_PIXELS == _PIL_MAX_IMAGE_PIXELS:  # ours, unless the user set their own
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    p = name
    if not raw:
        raise ImageReadError(f"cannot read image {p}: it is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # damaged metadata in a picture that decodes ("Corrupt EXIF data", "Tag data larger than
        # file"): viewers show the picture without a word, so do we (a warning would be 2 more lines)
        warnings.simplefilter("ignore", UserWarning)
        try:
            im: Image.Image = Image.open(io.BytesIO(raw))
            im.load()  # the first frame of an animation or a multi-page file
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageReadError(
                f"cannot read image {p}: too large, refused as a possible decompression bomb ({e})"
            ) from None
        except UnidentifiedImageError:
            raise ImageReadError(f"cannot read image {p}: not an image file PIL recognizes") from None
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
