"""Issue 35, item 1: bounded decoding. Every image's size, and the size of every resize of it, is
checked (``data.check_image_size``) before anything is decoded or allocated, with limits the user can
raise (``--max-pixels`` / ``--max-side``, ``data.ImageLimits``); PIL opens only ``data.IMAGE_FORMATS``
(never EPS, which runs Ghostscript); folder entries that cannot be read are named, never skipped
unsaid, and a FIFO is never opened."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import EpsImagePlugin, Image, ImageFile

import inceptionnet.data as D
from inceptionnet.cli import main as cli
from inceptionnet.errors import ImageReadError, UsageError

ICFG = D.InputConfig(input_size=28, in_chans=1, mean=(0.5,), std=(0.5,), crop_pct=0.875)
STRIP = (1_000_000, 1)  # width x height: 1 KB as PNG; resized to 32 high for a 28-px model: 32 M pixels
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


def png(path: Path, size: tuple[int, int]) -> Path:
    Image.new("L", size, 128).save(path)
    return path


@pytest.fixture
def no_decode_no_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding pixels or resizing fails the test: the checks must come before both."""

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("decoded or resized an image that is over the limits")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    from torchvision.transforms.v2 import functional as TF

    monkeypatch.setattr(TF, "resize", forbidden)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal untrained 28-px checkpoint (googlenet_small, 1 channel): no training needed."""
    from inceptionnet import create_model

    m = create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125)
    p = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    meta = {"version": 1, "model_name": "googlenet_small", "model_kwargs": {"width": 0.125}}
    cfg = D.InputConfig.from_model(m).to_dict()
    torch.save({**meta, "classes": [str(i) for i in range(10)], "data_cfg": cfg, "model": m.state_dict()}, p)
    return p


@pytest.fixture
def deadline() -> Iterator[None]:
    """A hang (a FIFO opened for reading blocks until a writer comes) fails the test instead."""

    def hung(*_: object) -> None:
        raise AssertionError("hung on a folder entry")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# -- sizes ----------------------------------------------------------------------------------------


def test_decoded_pixels_checked_from_the_header(tmp_path, no_decode_no_resize):
    p = png(tmp_path / "a.png", (20, 20))
    with pytest.raises(
        D.ImageTooLargeError, match="400 pixels, over the limit of 100 \\(--max-pixels\\)"
    ) as e:
        D.read_image(p, 1, limits=D.ImageLimits(max_pixels=100))
    assert str(e.value).startswith(f"cannot read image {p}:")


def test_strip_refused_before_decoding_with_the_default_limits(tmp_path, no_decode_no_resize):
    p = png(tmp_path / "strip.png", STRIP)
    assert p.stat().st_size < 2000
    t = D.eval_transform(ICFG, 1, native_size=-1)
    assert D.resize_target(t) == 32
    with pytest.raises(D.ImageTooLargeError, match=r"8,000,000x8|32,000,000x32") as e:
        D.read_image(p, 1, resize_to=D.resize_target(t))
    assert "--max-side" in str(e.value) and str(p) in str(e.value)


def test_the_transform_refuses_before_resizing(no_decode_no_resize):
    t = D.eval_transform(ICFG, 1, native_size=-1)
    with pytest.raises(D.ImageTooLargeError, match="--max-side"):
        t(torch.zeros(1, 1, 1_000_000, dtype=torch.uint8))
    tta = D.transforms.tta_transform(ICFG, 1, square=True)  # a fixed 44x44: its intermediate is bounded
    with pytest.raises(D.ImageTooLargeError, match="--max-pixels"):
        tta(torch.zeros(1, 2_000_000, 1, dtype=torch.uint8))


def test_a_fixed_size_resize_bounds_its_intermediate():
    # torch resizes the width first: a 1-wide, 1 M-high strip to 299x299 would write 299 M pixels
    with pytest.raises(D.ImageTooLargeError, match="would write 299,000,000 pixels"):
        D.check_image_size(1, 1_000_000, resize_to=(299, 299))
    assert D.check_image_size(6000, 4000, resize_to=(299, 299)) == (299, 299)
    assert D.check_image_size(4000, 3000, resize_to=256) == (256, 341)


def test_limits_can_be_raised_and_lowered(tmp_path):
    p = png(tmp_path / "wide.png", (1000, 2))
    assert D.read_image(p, 1, resize_to=32).shape == (1, 2, 1000)  # the resize is the caller's
    with pytest.raises(D.ImageTooLargeError, match="over the limit of 100 \\(--max-side\\)"):
        D.read_image(p, 1, resize_to=32, limits=D.ImageLimits(max_side=100))
    with D.image_limits(D.ImageLimits(max_side=100)), pytest.raises(D.ImageTooLargeError):
        D.read_image(p, 1, resize_to=32)
    strip = png(tmp_path / "strip.png", (100_000, 1))
    with pytest.raises(D.ImageTooLargeError, match="would write 102,400,000 pixels"):  # 3.2 M x 32
        D.read_image(strip, 1, resize_to=32, limits=D.ImageLimits(max_side=4_000_000))
    raised = D.ImageLimits(max_side=4_000_000, max_pixels=200_000_000)
    assert D.read_image(strip, 1, resize_to=32, limits=raised).shape[-1] == 100_000
    with pytest.raises(UsageError, match="--max-side must be a whole number"):
        D.ImageLimits(max_side=0)


def test_predict_strip_is_one_error_line(tmp_path, checkpoint, capsys, no_decode_no_resize):
    strip = png(tmp_path / "strip.png", STRIP)
    assert cli(["predict", "--checkpoint", str(checkpoint), str(strip)]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read image {strip}:"), err
    assert "--max-side" in lines[0] and "Traceback" not in err


def test_predict_flags_set_the_limits(tmp_path, checkpoint, capsys):
    img = png(tmp_path / "photo.png", (40, 30))
    assert cli(["predict", "--checkpoint", str(checkpoint), "--max-side", "40", str(img)]) == 2
    assert "(--max-side)" in capsys.readouterr().err  # resized to 32 high: 42 wide
    assert cli(["predict", "--checkpoint", str(checkpoint), "--max-pixels", "1000", str(img)]) == 2
    assert "(--max-pixels)" in capsys.readouterr().err
    strip = png(tmp_path / "strip.png", (2000, 1))
    assert cli(["predict", "--checkpoint", str(checkpoint), "--max-side", "70000", str(strip)]) == 0


def test_embed_fid_eval_and_serve_use_the_same_check(tmp_path, checkpoint, no_decode_no_resize):
    from inceptionnet.commands.embed import run_embed
    from inceptionnet.metrics import scores
    from inceptionnet.serve.engine import Engine, ImageTooLargeError

    strip = png(tmp_path / "cls" / "strip.png", STRIP) if (tmp_path / "cls").mkdir() is None else None
    assert strip is not None
    with pytest.raises(ImageReadError, match="none of the 1 files"):
        run_embed([str(strip)], str(tmp_path / "e.safetensors"), checkpoint=str(checkpoint))
    with pytest.raises(ImageReadError, match=r"would write 299,000,000 pixels.*--max-pixels"):
        next(scores._batches([png(tmp_path / "tall.png", (1, 1_000_000))], 1, "pytorch-fid", False, [], 0))
    ds = D.ImageFolderFiles(tmp_path, 1, D.eval_transform(ICFG, 1, native_size=-1), notes=False)
    with pytest.raises(D.ImageTooLargeError, match="--max-side"):
        ds[0]
    engine = Engine(
        "m", "w", ICFG, [str(i) for i in range(10)], run=lambda x: x, backend="eager", dtype="fp32"
    )
    assert ImageTooLargeError is D.ImageTooLargeError
    with pytest.raises(ImageTooLargeError, match="--max-side"):
        engine.decode(strip.read_bytes(), "up.png")
    with pytest.raises(ImageTooLargeError, match="--max-pixels"):
        Engine("m", "w", ICFG, ["a"], run=lambda x: x, backend="eager", dtype="fp32", max_pixels=10).decode(
            png(tmp_path / "p.png", (4, 4)).read_bytes(), "p.png"
        )


# -- formats --------------------------------------------------------------------------------------


@pytest.fixture
def eps_never_opened(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """PIL must never be asked to open anything as EPS (it would run Ghostscript on load)."""
    asked: list[object] = []

    def forbidden(self: object) -> None:
        raise AssertionError("PIL's EPS plugin was asked to open an upload")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", forbidden)
    real_open = Image.open

    def spy(fp: object, mode: str = "r", formats: object = None) -> object:
        asked.append(formats)
        return real_open(fp, mode, formats)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", spy)
    return asked


def test_eps_is_refused_without_running_anything(tmp_path, eps_never_opened):
    p = tmp_path / "drawing.eps"
    p.write_bytes(EPS)
    for name in (p, tmp_path / "disguised.png"):
        name.write_bytes(EPS)
        with pytest.raises(
            ImageReadError, match="not an image file PIL recognizes in the accepted formats"
        ) as e:
            D.read_image(name, 3)
        assert str(e.value).startswith(f"cannot read image {name}:") and "\n" not in str(e.value)
    assert eps_never_opened and all(f is not None and "EPS" not in f for f in eps_never_opened)
    with pytest.raises(ImageReadError, match="accepted formats"):
        D.decode_image(EPS, 3, name="upload.eps")


def test_formats_widen_only_explicitly(tmp_path, monkeypatch):
    ico = tmp_path / "icon.ico"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(ico)
    with pytest.raises(ImageReadError, match="accepted formats"):
        D.read_image(ico, 3)
    assert D.read_image(ico, 3, formats=("PNG", "ICO")).shape == (3, 16, 16)
    monkeypatch.setenv(D.images.FORMATS_ENV, "ico, tga")
    assert "ICO" in D.image_formats() and D.read_image(ico, 3).shape == (3, 16, 16)
    monkeypatch.setenv(D.images.FORMATS_ENV, "ICO,EPS")
    with pytest.raises(UsageError, match="EPS is refused: PIL opens it by running Ghostscript"):
        D.read_image(ico, 3)
    monkeypatch.setenv(D.images.FORMATS_ENV, "JPG")
    with pytest.raises(UsageError, match="unknown image format JPG"):
        D.image_formats()


def test_every_format_the_docs_name_is_accepted():
    assert set(D.IMAGE_FORMATS) >= {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"}
    assert "EPS" not in D.image_formats()
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"):
        buf = io.BytesIO()
        Image.new("RGB", (5, 4)).save(buf, fmt)
        assert D.decode_image(buf.getvalue(), 3, name=f"x.{fmt}").shape == (3, 4, 5)


# -- folders --------------------------------------------------------------------------------------


def odd_folder(root: Path) -> dict[str, Path]:
    """A folder with a good image, a FIFO, a socket-like special file and a link loop, all named .png."""
    root.mkdir(parents=True, exist_ok=True)
    good = png(root / "good.png", (8, 8))
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    loop = root / "loop.png"
    loop.symlink_to(loop.name)
    return {"good": good, "fifo": fifo, "loop": loop}


def test_fid_folder_names_fifos_and_link_loops(tmp_path, deadline):
    from inceptionnet.metrics import scores

    e = odd_folder(tmp_path / "imgs")
    files = scores.image_files(tmp_path / "imgs")
    assert set(files) == set(e.values())  # none left out without a word
    skipped: list[str] = []
    read = [Path(p) for b in scores._batches(files, 1, "pytorch-fid", True, skipped, 0) for p in b.paths]
    assert read == [e["good"]] and sorted(skipped) == sorted(str(e[k]) for k in ("fifo", "loop"))
    with pytest.raises(ImageReadError, match="not a regular file"):
        list(scores._batches([e["fifo"]], 1, "pytorch-fid", False, [], 0))


def test_embed_folder_names_each_unreadable_entry(tmp_path, checkpoint, capsys, deadline):
    from inceptionnet.commands.embed import image_files

    e = odd_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "sub").mkdir()
    (tmp_path / "imgs" / "sub" / "up").symlink_to("../..")  # a folder loop: read once, one warning
    png(tmp_path / "imgs" / "sub" / "deep.png", (8, 8))
    out = tmp_path / "e.safetensors"
    rc = cli(["embed", "--checkpoint", str(checkpoint), str(tmp_path / "imgs"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert any(str(e["fifo"]) in x and "not a regular file" in x for x in err.splitlines()), err
    assert any(str(e["loop"]) in x for x in err.splitlines() if x.startswith("error:")), err
    assert any(x.startswith("warning:") and "link loop" in x for x in err.splitlines()), err
    assert len(image_files([str(tmp_path / "imgs")])) == 4  # good, deep, pipe, loop
