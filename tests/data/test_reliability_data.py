"""Reliability of the data side (issue 21): image files decoded as a viewer shows them, memory caps,
damaged CIFAR-10 batches and Fashion-MNIST idx files, ImageFolder layouts.

Every case builds its files in tmp_path (tiny) and calls ``inceptionnet.data`` directly; a few go
through ``inceptionnet.cli.main`` to see the one ``error:`` line. The table of cases is in
docs/RELIABILITY.md (``RD::``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet import data as D
from inceptionnet.cli import main as cli
from inceptionnet.data import image_to_tensor, read_image
from inceptionnet.errors import DataNotFoundError, ImageReadError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
TINY_IMAGEFOLDER = ["train", "--dataset", "imagefolder", "--model", "googlenet_small", "--model-kwargs", "width=0.125",
                    "norm=none", "dropout=0", "--epochs", "1", "--batch-size", "4", "--input-size", "16",
                    "--no-progress", "--no-plots", "--no-tensorboard", "--threads", "1"]  # fmt: skip


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("error: ")]


def one_error_line(err: str, *needles: str) -> str:
    """The one ``error:`` line of ``err`` (notes may come before it), holding every needle."""
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert not [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("error: ", "note: "))], err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _fresh_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D.images, "_NOTED", set())  # notes said once per process: once per test here


def save(im: Image.Image, path: Path, **kw: Any) -> Path:
    im.save(path, **kw)
    return path


def gray_of(x: torch.Tensor) -> list[int]:
    return x[0].flatten().tolist()


# --------------------------------------------------------------------------------------------------
# 1. Images as a viewer shows them


def _ramp() -> np.ndarray:  # 2 x 3, every pixel different
    return np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)


# EXIF orientation -> what a viewer shows (numpy on the stored 2 x 3 pixels)
ORIENTED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
    5: lambda a: a.T, 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).T, 8: lambda a: np.rot90(a, 1),
}  # fmt: skip


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_exif_orientation_is_applied(orientation, fmt, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = save(Image.fromarray(_ramp(), "L"), tmp_path / f"o{orientation}.{fmt}", exif=exif)
    x = read_image(p, 1)
    assert x[0].numpy().tolist() == ORIENTED[orientation](_ramp()).tolist()


def test_damaged_exif_is_ignored(tmp_path):
    p = save(Image.fromarray(_ramp(), "L"), tmp_path / "bad_exif.png", exif=b"Exif\0\0garbage-not-tiff")
    assert read_image(p, 1)[0].numpy().tolist() == _ramp().tolist()


def _frames(mode: str) -> list[Image.Image]:
    return [Image.new(mode, (4, 4), v if mode == "L" else (v, v, v)) for v in (30, 200, 120)]


@pytest.mark.parametrize("fmt", ["gif", "png", "webp", "tiff"])  # GIF, APNG, animated WebP, multi-page TIFF
def test_animation_first_frame_and_one_note(fmt, tmp_path, capsys):
    frames = _frames("RGB" if fmt == "webp" else "L")
    kw: dict[str, Any] = {"lossless": True} if fmt == "webp" else {}
    paths = [save(frames[0], tmp_path / f"anim{i}.{fmt}", save_all=True, append_images=frames[1:], **kw)
             for i in range(3)]  # fmt: skip
    for p in paths:
        assert set(gray_of(read_image(p, 1))) == {30}, p  # the first frame
    err = capsys.readouterr().err.splitlines()
    assert err == [f"note: {paths[0]} has 3 frames (an animation or pages); the first frame is used, as for "
                   "every such file (said once)"]  # fmt: skip


# mode -> (a 1 x 2 image of that mode, what a viewer shows as gray levels)
def _mode_cases() -> dict[str, tuple[Image.Image, list[int]]]:
    def two(mode: str, a: Any, b: Any) -> Image.Image:
        im = Image.new(mode, (2, 1))
        im.putpixel((0, 0), a)
        im.putpixel((1, 0), b)
        return im

    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 255, 255, 255])
    pal.putpixel((1, 0), 1)
    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 0, 0, 255, 255, 255])
    pa.putpixel((0, 0), (0, 0))  # black, fully transparent -> white
    pa.putpixel((1, 0), (0, 255))  # black, opaque
    return {
        "1": (two("1", 0, 1), [0, 255]),
        "L": (two("L", 0, 200), [0, 200]),
        "LA": (two("LA", (0, 0), (0, 255)), [255, 0]),
        "La": (two("La", (0, 0), (100, 255)), [255, 100]),
        "P": (pal, [0, 255]),
        "PA": (pa, [255, 0]),
        "RGB": (two("RGB", (0, 0, 0), (255, 255, 255)), [0, 255]),
        "RGBA": (two("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)), [255, 0]),
        "RGBa": (two("RGBa", (0, 0, 0, 0), (50, 50, 50, 255)), [255, 50]),
        "RGBX": (two("RGBX", (0, 0, 0, 0), (255, 255, 255, 0)), [0, 255]),
        "CMYK": (two("CMYK", (0, 0, 0, 255), (0, 0, 0, 0)), [0, 255]),
        "YCbCr": (two("YCbCr", (0, 128, 128), (255, 128, 128)), [0, 255]),
        "LAB": (two("LAB", (0, 128, 128), (255, 128, 128)), [0, 255]),
        "HSV": (two("HSV", (0, 0, 0), (0, 0, 255)), [0, 255]),
        "I": (two("I", 0, 65535), [0, 255]),
        "I;16": (two("I;16", 0, 65535), [0, 255]),
        "I;16B": (two("I;16B", 0, 32768), [0, 128]),
        "I;16L": (two("I;16L", 0, 65535), [0, 255]),
        "I;16N": (two("I;16N", 65535, 0), [255, 0]),
        "F": (two("F", 0.0, 1.0), [0, 255]),
    }


MODES = _mode_cases()


@pytest.mark.parametrize("in_chans", [1, 3, 4])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_pillow_reads(mode, in_chans):
    im, shown = MODES[mode]
    assert im.mode == mode
    x = image_to_tensor(im, in_chans)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (in_chans, 1, 2)
    for c in range(in_chans):
        assert all(abs(a - b) <= 2 for a, b in zip(x[c].flatten().tolist(), shown, strict=True)), (
            c,
            x,
            shown,
        )


# (file name, how to write it, mode PIL reads it as)
FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("bw.png", lambda p: Image.fromarray(RGB[..., 0] > 128).save(p), "1"),
    ("gray_alpha.png", lambda p: Image.fromarray(RGB[..., :2], "LA").save(p), "LA"),
    ("palette_alpha.tif", lambda p: Image.new("PA", (8, 6)).save(p), "PA"),
    ("rgba.webp", lambda p: Image.fromarray(np.dstack([RGB, RGB[..., 0]]), "RGBA").save(p, lossless=True), "RGBA"),
    ("cmyk.tif", lambda p: Image.fromarray(RGB).convert("CMYK").save(p), "CMYK"),
    ("ycbcr.tif", lambda p: Image.fromarray(RGB).convert("YCbCr").save(p), "YCbCr"),
    ("lab.tif", lambda p: Image.fromarray(RGB).convert("LAB").save(p), "LAB"),
    ("int32.tif", lambda p: Image.fromarray(RGB[..., 0].astype(np.int32) * 1000).save(p), "I"),
    ("big_endian16.tif", lambda p: Image.new("I;16B", (8, 6), 300).save(p), "I;16B"),
    ("float.tif", lambda p: Image.fromarray(RGB[..., 0].astype(np.float32) / 255).save(p), "F"),
    ("float.pfm", lambda p: Image.fromarray(RGB[..., 0].astype(np.float32)).save(p), "F"),
    ("deep.pgm", lambda p: p.write_bytes(b"P5 2 1 1023\n" + np.array([0, 1023], ">u2").tobytes()), "I"),
    ("gray.bmp", lambda p: Image.fromarray(RGB[..., 0]).save(p), "L"),
    ("rgb.ppm", lambda p: Image.fromarray(RGB).save(p), "RGB"),
]  # fmt: skip


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", [f[0] for f in FILES])
def test_every_kind_of_file_is_read(name, in_chans, tmp_path):
    write, mode = next((w, m) for n, w, m in FILES if n == name)
    p = tmp_path / name
    write(p)
    assert Image.open(p).mode == mode
    x = read_image(p, in_chans)
    assert x.dtype == torch.uint8 and x.dim() == 3 and x.shape[0] == in_chans


def test_transparency_is_shown_over_white(tmp_path):
    black = (0, 0, 0)
    rgba = Image.new("RGBA", (3, 1))
    for i, a in enumerate((0, 128, 255)):
        rgba.putpixel((i, 0), (*black, a))
    assert gray_of(read_image(save(rgba, tmp_path / "rgba.png"), 1)) == [255, 127, 0]
    assert read_image(tmp_path / "rgba.png", 3)[:, 0, 0].tolist() == [255, 255, 255]
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert gray_of(read_image(save(la, tmp_path / "la.png"), 1)) == [255, 0]
    # tRNS: a palette entry, a gray level, an RGB color, a 16-bit gray level
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 0, 0, 0])
    pal.putpixel((1, 0), 1)
    assert gray_of(read_image(save(pal, tmp_path / "p.png", transparency=0), 1)) == [255, 0]
    gray = Image.fromarray(np.array([[0, 7]], np.uint8))
    assert gray_of(read_image(save(gray, tmp_path / "l.png", transparency=0), 1)) == [255, 7]
    rgb = Image.fromarray(np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8))
    assert gray_of(read_image(save(rgb, tmp_path / "rgb.png", transparency=(1, 2, 3)), 1)) == [255, 0]
    deep = Image.fromarray(np.array([[0, 5]], np.uint16))
    assert gray_of(read_image(save(deep, tmp_path / "i16.png", transparency=5), 1)) == [0, 255]
    gif = Image.new("P", (2, 1), 0)
    gif.putpalette([0, 0, 0, 0, 0, 0])
    gif.putpixel((1, 0), 1)
    assert gray_of(read_image(save(gif, tmp_path / "t.gif", transparency=0), 1)) == [255, 0]


def test_deep_images_are_scaled_from_their_range(tmp_path):
    def read(arr: np.ndarray, name: str) -> list[int]:
        return gray_of(read_image(save(Image.fromarray(arr), tmp_path / name), 1))

    assert read(np.array([[0, 32768, 65535]], np.uint16), "u16.png") == [0, 128, 255]
    assert read(np.array([[0, 32768, 65535]], np.uint16), "u16.tif") == [0, 128, 255]
    dark = np.array([[0, 255, 1000]], np.uint16)  # a dark 16-bit image stays dark (not stretched)
    assert read(dark, "dark16.png") == [0, 1, 4]
    assert read(np.array([[-32768, 0, 32767]], np.int16), "s16.tif") == [0, 128, 255]  # signed range
    assert read(np.array([[0, 50_000, 100_000]], np.int32), "i32.tif") == [0, 128, 255]  # own range
    assert read(np.array([[0.0, 0.5, 1.0]], np.float32), "unit.tif") == [0, 128, 255]
    assert read(np.array([[0.0, 500.0, 1000.0]], np.float32), "hdr.tif") == [0, 128, 255]  # not clipped
    assert read(np.array([[-1.0, 0.0, 1.0]], np.float32), "signed.tif") == [0, 128, 255]
    assert read(np.array([[np.nan, 0.0, np.inf, 1.0]], np.float32), "nan.tif") == [0, 0, 255, 255]
    assert read(np.full((1, 2), np.nan, np.float32), "allnan.tif") == [0, 0]
    assert read(np.full((1, 2), 7.0, np.float32), "const.tif") == [255, 255]
    pgm = tmp_path / "deep.pgm"
    pgm.write_bytes(b"P5 3 1 1023\n" + np.array([0, 512, 1023], ">u2").tobytes())
    assert gray_of(read_image(pgm, 1)) == [0, 128, 255]


# --------------------------------------------------------------------------------------------------
# 2. Memory caps and files that are not images


def test_file_size_limit_is_checked_before_reading(tmp_path, monkeypatch):
    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as f:  # 300 MiB on paper, no blocks on disk: stat says so, nothing is read
        f.truncate(300 * 2**20)
    with pytest.raises(ImageReadError) as exc:
        read_image(sparse, 3)
    assert str(exc.value).startswith(f"cannot read image {sparse}: the file is 300 MiB, over 256 MiB")
    assert "MAX_IMAGE_BYTES" in str(exc.value)
    small = save(Image.new("RGB", (64, 64)), tmp_path / "small.bmp")
    monkeypatch.setattr(D, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(ImageReadError, match="the file is 0 MiB, over 0 MiB, the limit for one image"):
        read_image(small, 3)
    monkeypatch.setattr(
        Path, "stat", lambda self, **kw: os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    )
    with pytest.raises(ImageReadError, match="the file is larger, over 0 MiB"):  # stat says 0 bytes (/proc)
        read_image(small, 3)


def _fifo(tmp: Path) -> Path:
    p = tmp / "pipe.png"
    os.mkfifo(p)
    return p


def _broken_link(tmp: Path) -> Path:
    p = tmp / "gone.jpg"
    p.symlink_to(tmp / "nowhere.jpg")
    return p


def _link_loop(tmp: Path) -> Path:
    p = tmp / "loop.png"
    p.symlink_to(p)
    return p


def _truncated_png(tmp: Path) -> Path:
    good = save(Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)), tmp / "good.png")
    p = tmp / "cut.png"
    p.write_bytes(good.read_bytes()[:200])
    return p


def _random_jpg(tmp: Path) -> Path:
    p = tmp / "noise.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0" + RNG.bytes(2000))  # a JPEG's magic, then noise
    return p


NOT_IMAGES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda t: t / "absent.png", "No such file or directory"),
    "folder": (lambda t: (t / "dir.png").mkdir() or t / "dir.png", "it is a folder, not an image file"),
    "fifo": (_fifo, "not a regular file"),
    "device": (lambda t: Path("/dev/zero"), "not a regular file"),
    "broken_symlink": (_broken_link, "a broken symbolic link (to "),
    "symlink_loop": (_link_loop, "cannot read image"),
    "truncated_png": (_truncated_png, "not a valid image"),
    "random_jpeg": (_random_jpg, "not a valid image"),
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_files_that_are_not_images_name_the_file(kind, tmp_path):
    make, needle = NOT_IMAGES[kind]
    p = make(tmp_path)
    with pytest.raises(ImageReadError) as exc:
        read_image(p, 3)
    assert str(exc.value).startswith(f"cannot read image {p}:") and needle in str(exc.value), exc.value
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "tiff", "webp", "bmp"])
def test_damaged_images_raise_only_image_read_error(fmt, tmp_path):
    """Random bytes changed or cut in a valid file: a tensor or ImageReadError, never another error."""
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, fmt)
    raw = bytearray(buf.getvalue())
    rng = np.random.default_rng(1)
    outcomes = set()
    for i in range(40):
        b = bytearray(raw)
        for pos in rng.integers(0, len(b), int(rng.integers(1, 8))):
            b[pos] = int(rng.integers(0, 256))
        if i % 4 == 0:
            b = b[: int(rng.integers(1, len(b)))]
        p = tmp_path / f"{i}.{fmt}"
        p.write_bytes(bytes(b))
        try:
            x = read_image(p, 3)
            assert x.dtype == torch.uint8 and x.shape[0] == 3
            outcomes.add("read")
        except ImageReadError as e:
            assert str(e).startswith(f"cannot read image {p}:") and "\n" not in str(e)
            outcomes.add("refused")
    assert "refused" in outcomes


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A googlenet_small checkpoint of 2 classes on 16 px RGB, as train writes it (no training)."""
    model = create_model("googlenet_small", num_classes=2, in_chans=3, width=0.125, norm="none")
    icfg = D.InputConfig(16, 3, (0.5,) * 3, (0.25,) * 3)
    path = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict(), "model_name": "googlenet_small", "classes": ["a", "b"],
                "model_kwargs": {"width": 0.125, "norm": "none"}, "data_cfg": icfg.to_dict()}, path)  # fmt: skip
    return path


def test_predict_on_odd_files_one_line_each(checkpoint, tmp_path, capsys):
    frames = _frames("L")
    good = [
        save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:]),
        save(Image.new("RGBA", (5, 5), (0, 0, 0, 0)), tmp_path / "clear.png"),
        save(Image.fromarray(np.array([[0, 65535]], np.uint16)), tmp_path / "deep.tif"),
        save(Image.new("CMYK", (3, 3)), tmp_path / "cmyk.jpg"),
    ]
    sparse = tmp_path / "huge.jpg"
    with open(sparse, "wb") as f:
        f.truncate(257 * 2**20)
    bad = [NOT_IMAGES["folder"][0](tmp_path), _broken_link(tmp_path), sparse]
    rc = cli(["predict", "--checkpoint", str(checkpoint), "--json", *map(str, good + bad)])
    cap = capsys.readouterr()
    assert rc == 2 and "Traceback" not in cap.err
    res = {r["path"]: r for r in json.loads(cap.out)}
    assert all("top" in res[str(p)] for p in good), res
    lines = error_lines(cap.err)
    assert len(lines) == len(bad)
    for p, line in zip(bad, lines, strict=True):
        assert line.startswith(f"error: cannot read image {p}: "), line
    notes = [ln for ln in cap.err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "has 3 frames" in notes[0]


# --------------------------------------------------------------------------------------------------
# 3. CIFAR-10 batches


def _batch(n: int = 4, override: dict[bytes, Any] | None = None) -> dict[Any, Any]:
    d: dict[Any, Any] = {b"batch_label": b"testing batch 1 of 1",
                         b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(n)], b"filenames": [b"x.png"] * n}  # fmt: skip
    d.update(override or {})
    return d


def _write_pickle(path: Path, obj: Any) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo unsafe",))


CIFAR_DAMAGED: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "truncated": (lambda p: p.write_bytes(pickle.dumps(_batch(), protocol=2)[:5000]), "is damaged or not a CIFAR-10 python batch"),
    "random_bytes": (lambda p: p.write_bytes(RNG.bytes(4096)), "is damaged or not a CIFAR-10 python batch"),
    "text": (lambda p: p.write_text("<html>404 Not Found</html>\n"), "is damaged or not a CIFAR-10 python batch"),
    "unsafe_pickle": (lambda p: _write_pickle(p, {b"data": _RunsCode()}), "refusing to load posix.system"),
    "not_a_dict": (lambda p: _write_pickle(p, [1, 2, 3]), "holds a list, not the dict of a CIFAR-10 batch"),
    "cifar100": (lambda p: _write_pickle(p, {b"data": _batch()[b"data"], b"fine_labels": [1] * 4}), "CIFAR-100 batches"),
    "no_data": (lambda p: _write_pickle(p, {b"labels": [0]}), "has no data entry (its keys: labels)"),
    "wrong_shape": (lambda p: _write_pickle(p, _batch(4, {b"data": np.zeros((4, 1000), np.uint8)})), "holds data of shape (4, 1000)"),
    "float_data": (lambda p: _write_pickle(p, _batch(4, {b"data": np.full((4, 3072), 0.5)})), "holds data of type float64"),
    "out_of_range_data": (lambda p: _write_pickle(p, _batch(4, {b"data": np.full((4, 3072), 300)})), "not pixel values 0-255"),
    "label_count": (lambda p: _write_pickle(p, _batch(4, {b"labels": [0, 1]})), "holds 2 labels of shape (2,) for 4 images"),
    "label_value": (lambda p: _write_pickle(p, _batch(4, {b"labels": [0, 1, 12, 3]})), "holds label 12 at index 2"),
    "label_type": (lambda p: _write_pickle(p, _batch(4, {b"labels": ["cat"] * 4})), "holds labels of type <U3"),
    "ragged": (lambda p: _write_pickle(p, _batch(4, {b"data": [[1, 2], [3]]})), "not arrays"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CIFAR_DAMAGED))
def test_damaged_cifar_batch_names_the_file(kind, tmp_path):
    write, needle = CIFAR_DAMAGED[kind]
    p = tmp_path / "test_batch"
    write(p)
    with pytest.raises(DataNotFoundError) as exc:
        D.load_cifar10("test", tmp_path)
    msg = str(exc.value)
    assert str(p) in msg and needle in msg and "\n" not in msg, msg


def test_cifar_good_batches_and_missing_ones(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    _write_pickle(base / "test_batch", _batch(4))
    x, y = D.load_cifar10("test", tmp_path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 and y.tolist() == [0, 1, 2, 3]
    str_keys = {"data": _batch(3)[b"data"].reshape(3, 3, 32, 32), "labels": np.array([9, 8, 7])}
    _write_pickle(base / "test_batch", str_keys)  # re-pickled in Python 3: str keys, 4-D data
    assert D.load_cifar10("test", tmp_path)[1].tolist() == [9, 8, 7]
    for i in range(1, 5):
        _write_pickle(base / f"data_batch_{i}", _batch(2))
    with pytest.raises(DataNotFoundError, match=r"has data_batch_1, .*data_batch_4 but not data_batch_5"):
        D.load_cifar10("train", tmp_path)
    other = tmp_path / "tarball"
    other.mkdir()
    (other / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz is not extracted; run tar xzf"):
        D.load_cifar10("test", other)


def test_damaged_cifar_batch_through_train(tmp_path, capsys):
    for i in range(1, 6):
        _write_pickle(tmp_path / f"data_batch_{i}", _batch(4))
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(_batch(4), protocol=2)[:3000])
    _write_pickle(tmp_path / "test_batch", _batch(4))
    rc = cli(["train", "--dataset", "cifar10", "--data", str(tmp_path), "--model", "googlenet_small",
              "--model-kwargs", "width=0.125", "--epochs", "1", "--no-progress", "--no-plots",
              "--no-tensorboard", "--output-dir", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2
    one_error_line(capsys.readouterr().err, f"CIFAR-10 batch {tmp_path / 'data_batch_3'} is damaged")


# --------------------------------------------------------------------------------------------------
# 4. Fashion-MNIST idx files


def _idx(kind: str, n: int = 3, side: int = 28, magic: bytes | None = None) -> bytes:
    if kind == "images":
        head = (magic or b"\0\0\x08\x03") + b"".join(d.to_bytes(4, "big") for d in (n, side, side))
        return head + RNG.integers(0, 256, n * side * side, dtype=np.uint8).tobytes()
    return (magic or b"\0\0\x08\x01") + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n))


def _fmnist(root: Path, images: bytes | None = None, labels: bytes | None = None, gz: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for stem, raw in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        if raw is None:
            continue
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / stem).write_bytes(raw)
    return root


IMG, LBL = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
HUGE = b"\0\0\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2**31, 28, 28)) + b"\0" * 100
FMNIST_DAMAGED: dict[str, tuple[bytes, bytes, str, str]] = {  # images, labels, file named, message
    "empty": (b"", _idx("labels"), IMG, "is empty (0 bytes)"),
    "random_bytes": (RNG.bytes(5000), _idx("labels"), IMG, "is not an idx file of unsigned bytes (it starts with"),
    "float_idx": (_idx("images", magic=b"\0\0\x0d\x03"), _idx("labels"), IMG, "not an idx file of unsigned bytes"),
    "swapped": (_idx("labels"), _idx("labels"), IMG, "(is it the labels file?)"),
    "header_cut": (_idx("images")[:9], _idx("labels"), IMG, "is truncated within its header"),
    "truncated": (_idx("images")[:1000], _idx("labels"), IMG, "is truncated: 984 of the 2,352 bytes"),
    "extra_bytes": (_idx("images") + b"\0" * 10, _idx("labels"), IMG, "holds more bytes than its header declares"),
    "not_28x28": (_idx("images", side=27), _idx("labels"), IMG, "holds 27x27 images"),
    "huge_header": (HUGE, _idx("labels"), IMG, "is truncated: 100 of the 1,683,627,180,032 bytes"),
    "label_value": (_idx("images"), _idx("labels")[:-1] + b"\x0c", LBL, "label 12 at index 2 is not a Fashion-MNIST class"),
    "counts_differ": (_idx("images", n=3), _idx("labels", n=5), IMG, "holds 3 images but"),
}  # fmt: skip


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", sorted(FMNIST_DAMAGED))
def test_damaged_fashion_mnist_names_the_file(kind, gz, tmp_path):
    images, labels, named, needle = FMNIST_DAMAGED[kind]
    if gz and kind == "empty":  # the .gz file has bytes; what it decompresses to has none
        needle = ".gz holds no data"
    root = _fmnist(tmp_path, images, labels, gz)
    with pytest.raises(DataNotFoundError) as exc:
        D.load_fashion_mnist("test", root)
    msg = str(exc.value)
    assert str(root / named) in msg and needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("damage", ["cut", "not_gzip"])
def test_damaged_gzip_names_the_file(damage, tmp_path):
    root = _fmnist(tmp_path, _idx("images"), _idx("labels"), gz=True)
    gz = root / f"{IMG}.gz"
    raw = gz.read_bytes()
    gz.write_bytes(raw[: len(raw) // 2] if damage == "cut" else b"plain bytes, not gzip" * 10)
    with pytest.raises(DataNotFoundError, match=r"cannot read .*the file is damaged") as exc:
        D.load_fashion_mnist("test", root)
    assert str(gz) in str(exc.value)


def test_fashion_mnist_good_and_half_a_pair(tmp_path):
    x, y = D.load_fashion_mnist("test", _fmnist(tmp_path / "ok", _idx("images"), _idx("labels"), gz=True))
    assert x.shape == (3, 28, 28) and y.tolist() == [0, 1, 2]
    half = _fmnist(tmp_path / "half", _idx("images"), None)
    with pytest.raises(DataNotFoundError, match=f"found {half / IMG} but not {LBL}"):
        D.load_fashion_mnist("test", half)


def test_damaged_fashion_mnist_through_train(tmp_path, capsys):
    root = tmp_path / "fm"
    for split in ("train", "t10k"):
        _fmnist(root, None, None)
        (root / f"{split}-images-idx3-ubyte").write_bytes(_idx("images", n=8))
        (root / f"{split}-labels-idx1-ubyte").write_bytes(_idx("labels", n=8))
    (root / "train-images-idx3-ubyte").write_bytes(_idx("images", n=8)[:3000])
    rc = cli(["train", "--dataset", "fashion_mnist", "--data", str(root), "--model", "googlenet_small",
              "--model-kwargs", "width=0.125", "--epochs", "1", "--val-split", "0", "--no-progress",
              "--no-plots", "--no-tensorboard", "--output-dir", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2
    one_error_line(capsys.readouterr().err, f"{root / 'train-images-idx3-ubyte'} is truncated")


# --------------------------------------------------------------------------------------------------
# 5. ImageFolder layouts


def _img(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(Image.new("RGB", (6, 5), (value, value, value)), path)


def _folder(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    """root/split/class/i.png with the given numbers of images per class."""
    for split, classes in splits.items():
        for c, n in classes.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _img(root / split / c / f"{i}.png", 40 * i)
    return root


GOOD = {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}}


def _no_train(r: Path) -> Path:
    _img(r / "cat" / "0.png")
    (r / "dog").mkdir()
    return r


def _data_file(r: Path) -> Path:
    r.write_bytes(b"PK\x03\x04")  # a zip archive, not extracted
    return r


def _train_empty(r: Path) -> Path:
    (r / "train").mkdir(parents=True)
    (r / "train" / "README").write_text("put class folders here\n")
    return r


def _broken_train(r: Path) -> Path:
    r.mkdir()
    (r / "train").symlink_to(r / "train")
    return r


def _flat_train(r: Path) -> Path:
    for i in range(3):
        _img(r / "train" / f"{i}.jpg")
    return r


def _only_text(r: Path) -> Path:
    _folder(r, {"train": {"cat": 0, "dog": 0}, "val": {"cat": 1}})
    (r / "train" / "cat" / "notes.txt").write_text("todo\n")
    return r


def _empty_class(r: Path) -> Path:
    _folder(r, {"train": {"cat": 2, "dog": 2, "bird": 0}, "val": GOOD["val"]})
    (r / "train" / "bird" / "labels.csv").write_text("a,b\n")
    return r


def _val_extra(r: Path) -> Path:
    return _folder(r, {"train": GOOD["train"], "val": {"cat": 1, "dog": 1, "frog": 2, "empty": 0}})


def _val_empty(r: Path) -> Path:
    return _folder(r, {"train": GOOD["train"], "val": {"cat": 0, "dog": 0}})


def _file_as_train(r: Path) -> Path:
    r.mkdir()
    (r / "train").write_text("not a folder\n")
    return r


def _all_bad(r: Path) -> Path:
    _folder(r, GOOD)
    (r / "train" / "dog" / "0.png").write_bytes(b"")
    (r / "train" / "dog" / "1.png").write_text("not a png")
    return r


LAYOUTS: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {  # build, error, extra train flags
    "missing_data": (lambda r: r, "--data {r} does not exist", []),
    "data_is_a_file": (_data_file, "--data {r} is a file, not a folder", []),
    "no_train_folder": (_no_train, "image folder {r}/train does not exist", []),
    "split_folder_passed": (_no_train, "(is it a split folder itself? then pass its parent folder)", []),
    "train_is_a_file": (_file_as_train, "image folder {r}/train is a file, not a folder", []),
    "train_link_loop": (_broken_train, "image folder {r}/train is a broken symbolic link or a link loop", []),
    "train_empty": (_train_empty, "image folder {r}/train has no class folders", []),
    "images_not_in_class_folders": (_flat_train, "image folder {r}/train holds 3 images but no class folders", []),
    "no_images_at_all": (_only_text, "image folder {r}/train holds no images: its 2 class folders (cat, dog)", []),
    "empty_class_folder": (_empty_class, "class folder {r}/train/bird has no images", []),
    "no_val_folder": (lambda r: _folder(r, {"train": GOOD["train"]}), "image folder {r}/val does not exist", []),
    "val_class_not_in_train": (_val_extra, "image folder {r}/val has classes that the training folder {r}/train "
                               "does not have: frog (2 images)", []),
    "val_without_images": (_val_empty, "no images found in {r}/val", []),
    "every_image_of_a_class_bad": (_all_bad, "every image of class folder {r}/train/dog is unreadable",
                                   ["--skip-bad-images"]),
}  # fmt: skip


def _load_like_train(data: Path, skip_bad: bool = False) -> tuple[D.ImageFolderFiles, D.ImageFolderFiles]:
    """What train/build.py does with --dataset imagefolder."""
    D.dataset_info("imagefolder", str(data))
    train = D.ImageFolderFiles(D.imagefolder_root(str(data), "train"), 3, None, skip_bad)
    val = D.ImageFolderFiles(D.imagefolder_root(str(data), "val"), 3, None, skip_bad, train.classes)
    return train, val


@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_imagefolder_layouts_one_line(kind, tmp_path):
    build, needle, flags = LAYOUTS[kind]
    r = build(tmp_path / "data")
    with pytest.raises((DataNotFoundError, ValueError)) as exc:
        _load_like_train(r, skip_bad=bool(flags))
    msg = str(exc.value)
    assert needle.format(r=r) in msg and "\n" not in msg, msg


@pytest.mark.parametrize("kind", ["data_is_a_file", "split_folder_passed", "images_not_in_class_folders",
                                  "empty_class_folder", "val_class_not_in_train", "every_image_of_a_class_bad"])  # fmt: skip
def test_imagefolder_layouts_through_train(kind, tmp_path, capsys):
    build, needle, flags = LAYOUTS[kind]
    r = build(tmp_path / "data")
    rc = cli([*TINY_IMAGEFOLDER, "--data", str(r), "--output-dir", str(tmp_path / "o"), *flags])
    assert rc == 2
    one_error_line(capsys.readouterr().err, needle.format(r=r))


def _messy(r: Path) -> Path:
    """A data set as people's folders hold it: hidden files, notes, a stray image, a symlink loop,
    GIFs and upper-case extensions, a subfolder inside a class; val lacks one class."""
    _folder(r, {"train": {"cat": 2, "dog": 2, "owl": 1}, "val": {"cat": 1, "dog": 1}})
    t = r / "train"
    (t / ".ipynb_checkpoints").mkdir()
    _img(t / ".ipynb_checkpoints" / "x.png")
    (t / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (t / "cat" / "._0.png").write_bytes(b"\0\5\26\7AppleDouble")  # macOS resource fork: not an image
    (t / "cat" / "labels.txt").write_text("cat\n")
    _img(t / "stray.jpg")
    (t / "cat" / "loop").symlink_to(t / "cat")
    _img(t / "dog" / "more" / "2.PNG")
    _frames("L")[0].save(t / "owl" / "a.gif", save_all=True, append_images=_frames("L")[1:])
    return r


def test_imagefolder_leaves_out_what_is_not_data_in_one_note(tmp_path, capsys):
    r = _messy(tmp_path / "data")
    train, val = _load_like_train(r)
    assert train.classes == ["cat", "dog", "owl"] and val.classes == train.classes
    names = [os.path.relpath(p, r / "train") for p, _ in train.samples]
    assert names == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/more/2.PNG", "owl/0.png",
                     "owl/a.gif"]  # fmt: skip
    assert [y for _, y in train.samples] == [0, 0, 1, 1, 1, 2, 2]
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        f"note: {r / 'train'}: ignored 6 entries: 3 hidden names (.DS_Store, .ipynb_checkpoints, cat/._0.png); "
        "1 file without an image extension (cat/labels.txt); 1 image outside the class folders (stray.jpg); "
        "1 folder already read through a symbolic link (a loop) (cat/loop)",
        f"note: {r / 'val'} has no images of 1 of the 3 classes of the training folder {r / 'train'}: owl; "
        "they are left out of its scores",
    ]
    assert train[6][0].shape == (3, 4, 4)  # the GIF's first frame


def test_imagefolder_order_matches_torchvision(tmp_path):
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    r = _folder(tmp_path / "d", {"train": {"b": 2, "a": 3, "c": 1}})
    _img(r / "train" / "a" / "sub" / "z" / "9.jpg")
    _img(r / "train" / "a" / "sub" / "0.JPG")
    _img(r / "train" / "c" / "aa" / "1.png")
    (r / "train" / "b" / "link").symlink_to(r / "train" / "c" / "aa")  # a link to another class: followed
    ds = D.ImageFolderFiles(r / "train", 3)
    ref = make_dataset(str(r / "train"), {c: i for i, c in enumerate(ds.classes)}, IMG_EXTENSIONS)
    assert ds.samples == ref


def test_val_missing_a_class_trains_with_a_note(tmp_path, capsys):
    r = _folder(tmp_path / "data", {"train": {"cat": 3, "dog": 3, "owl": 2}, "val": {"cat": 2, "dog": 2}})
    rc = cli([*TINY_IMAGEFOLDER, "--data", str(r), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (
        f"note: {r / 'val'} has no images of 1 of the 3 classes of the training folder {r / 'train'}: owl"
        in err
    )


def test_model_classes_and_a_folder_with_others(tmp_path, capsys):
    """eval's path: classes from a checkpoint, a folder with another class and without one of them."""
    r = _folder(tmp_path / "imgs", {"test": {"a": 1, "zebra": 2}})
    with pytest.raises(
        DataNotFoundError, match=r"has classes that the model does not have: zebra \(2 images\)"
    ):
        D.ImageFolderFiles(r / "test", 3, classes=["a", "b"])
    (r / "test" / "zebra" / "0.png").unlink()
    (r / "test" / "zebra" / "1.png").unlink()
    ds = D.ImageFolderFiles(r / "test", 3, classes=["b", "a"], classes_from="checkpoint x.pt")
    assert [y for _, y in ds.samples] == [1]  # "a" is class 1 of the model
    assert capsys.readouterr().err.splitlines() == [
        f"note: {r / 'test'} has no images of 1 of the 2 classes of checkpoint x.pt: b; they are left out of its scores"
    ]


def test_unlistable_folder_is_one_line(tmp_path, monkeypatch):
    r = _folder(tmp_path / "d", GOOD)
    real = os.scandir

    def denied(path: Any) -> Any:
        if str(path).endswith("dog"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(
        DataNotFoundError, match=f"cannot list image folder {r / 'train' / 'dog'}: Permission denied"
    ):
        _load_like_train(r)


def test_import_stays_free_of_pil_and_torchvision():
    code = "import sys, inceptionnet.data; print(sorted(m for m in sys.modules if m.startswith(('PIL', 'torchvision'))))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
