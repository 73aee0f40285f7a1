"""Reliability and security (issue 10): untrusted and damaged files, bad images, bad arguments,
property-based model construction, killed and failing training runs, non-finite values.

docs/RELIABILITY.md lists every case with the test that checks it. Cases tested elsewhere:
tests/train/test_train.py::test_sigterm_saves_and_resume_matches (SIGTERM saves and exits),
::test_atomic_write_keeps_old_checkpoint, ::test_nan_loss_stops_with_clear_message,
::test_nan_during_training_keeps_last_good_checkpoint, ::test_bad_arguments,
::test_recipe_unknown_key_and_override, ::test_predict_files (corrupt PNG among good images).
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import FAULT_RUN, SMALL, TINY, assert_same_weights, one_error_line, start_hooked_train
from inceptionnet import create_model
from inceptionnet.cli import main as cli
from inceptionnet.data import read_image
from inceptionnet.errors import CheckpointError, ImageReadError

CONSOLE_SCRIPT = Path(sys.executable).parent / "inceptionnet"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli(argv)
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray((np.arange(64, dtype=np.uint8).reshape(8, 8) * 4), mode="L").save(p)
    return p


# --------------------------------------------------------------------------------------------------
# 1. Untrusted files


class _RunsCode:
    """Unpickling this runs ``touch MARKER`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path, how: str) -> Path:
    obj = {"model": {"conv1.conv.weight": _RunsCode(marker)}, "epoch": 1, "model_name": "googlenet_small"}
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle, as some hubs ship
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("command", ["eval", "predict", "train", "create_model"])
def test_unsafe_pickle_is_refused_and_never_runs(how, command, tmp_path, digit_png, capsys):
    marker = tmp_path / "PWNED"
    evil = write_malicious(tmp_path / "evil.pth", marker, how)
    if command == "create_model":
        with pytest.raises(CheckpointError, match="unsafe"):
            create_model("googlenet_small", **SMALL, weights=str(evil))
    else:
        argv = {
            "eval": ["eval", "--checkpoint", str(evil), "--dataset", "digits", "--no-progress"],
            "predict": ["predict", "--checkpoint", str(evil), str(digit_png)],
            "train": [
                "train",
                *TINY,
                "--epochs",
                "1",
                "--resume",
                str(evil),
                "--output-dir",
                str(tmp_path / "o"),
            ],
        }[command]
        rc, err = run_cli(argv, capsys)
        assert rc == 2
        one_error_line(err, "unsafe", str(evil))
    assert not marker.exists(), "the pickle ran code"


def test_unsafe_pickle_through_console_script(tmp_path, digit_png):
    marker = tmp_path / "PWNED"
    evil = write_malicious(tmp_path / "evil.pt", marker, "zip")
    proc = subprocess.run([str(CONSOLE_SCRIPT), "predict", "--checkpoint", str(evil), str(digit_png)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    one_error_line(proc.stderr, "refusing unsafe checkpoint", "posix.system")
    assert not marker.exists()


def test_save_format_safetensors_loads_in_predict_and_create_model(trained_run, digit_png, capsys):
    st_file = trained_run / "best.safetensors"
    assert st_file.is_file()
    rc = cli(["predict", "--checkpoint", str(st_file), "--json", str(digit_png)])
    out_st = capsys.readouterr().out
    assert rc == 0
    rc = cli(["predict", "--checkpoint", str(trained_run / "best.pt"), "--json", str(digit_png)])
    assert rc == 0 and capsys.readouterr().out == out_st  # same weights, same answer
    model = create_model("googlenet_small", **SMALL, weights=str(st_file))
    best = torch.load(trained_run / "best.pt", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k


# --------------------------------------------------------------------------------------------------
# 2. Damaged and foreign files


def _checkpoint_of(tmp: Path, name: str, **kwargs: Any) -> Path:
    """A checkpoint saying it holds googlenet_small width=0.125 but holding another model's tensors."""
    m = create_model("googlenet_small", num_classes=10, in_chans=1, **kwargs)
    path = tmp / f"{name}.pt"
    torch.save({"model": m.state_dict(), "model_name": "googlenet_small", "model_kwargs": {"width": 0.125},
                "epoch": 1}, path)  # fmt: skip
    return path


def make_damaged(kind: str, tmp: Path, trained_run: Path) -> tuple[Path, list[str]]:
    """A damaged or foreign file of ``kind`` and the words its error must contain."""
    if kind == "truncated":
        raw = (trained_run / "best.pt").read_bytes()
        p = tmp / "truncated.pt"
        p.write_bytes(raw[: len(raw) // 2])
        return p, ["cannot read checkpoint", "truncated"]
    if kind == "empty":
        p = tmp / "empty.pt"
        p.write_bytes(b"")
        return p, ["is empty (0 bytes)"]
    if kind == "random":
        p = tmp / "random.pt"
        p.write_bytes(np.random.default_rng(0).bytes(4096))
        return p, ["cannot read checkpoint", "not a PyTorch checkpoint"]
    if kind == "random_safetensors":
        p = tmp / "random.safetensors"
        p.write_bytes(np.random.default_rng(1).bytes(4096))
        return p, ["cannot read safetensors file"]
    if kind == "other_model":  # no BatchNorm: conv biases instead of bn.* tensors
        return _checkpoint_of(tmp, "other", width=0.125, norm="none"), [
            "does not fit model GoogLeNet", "missing keys (first: conv1.bn.weight", "unexpected keys (first: conv1.conv.bias",
        ]  # fmt: skip
    if kind == "wrong_shapes":
        return _checkpoint_of(tmp, "wide", width=0.25), [
            "tensor conv1.conv.weight has shape (16, 1, 3, 3) in the file but (8, 1, 3, 3) in the model",
        ]
    raise AssertionError(kind)


DAMAGED = ["truncated", "empty", "random", "random_safetensors", "other_model", "wrong_shapes"]


@pytest.mark.parametrize("kind", DAMAGED)
def test_damaged_checkpoint_predict_and_eval(kind, trained_run, tmp_path, digit_png, capsys):
    path, words = make_damaged(kind, tmp_path, trained_run)
    rc, err = run_cli(["predict", "--checkpoint", str(path), str(digit_png)], capsys)
    assert rc == 2
    one_error_line(err, *words)
    rc, err = run_cli(["eval", "--checkpoint", str(path), "--dataset", "digits", "--no-progress"], capsys)
    assert rc == 2
    one_error_line(err, *words)


@pytest.mark.parametrize("kind", ["truncated", "random", "other_model", "wrong_shapes"])
def test_damaged_checkpoint_resume_and_create_model(kind, trained_run, tmp_path, capsys):
    path, words = make_damaged(kind, tmp_path, trained_run)
    with pytest.raises(CheckpointError) as exc:
        create_model("googlenet_small", **SMALL, weights=str(path))
    for w in words:
        assert w in str(exc.value)
    # train --resume: a file without optimizer state is refused before any training
    rc, err = run_cli(["train", *TINY, "--epochs", "1", "--resume", str(path), "--output-dir", str(tmp_path / "o")],
                      capsys)  # fmt: skip
    assert rc == 2
    one_error_line(err)


@pytest.mark.parametrize("kind", ["truncated", "random", "wrong_shapes"])
def test_damaged_checkpoint_through_console_script(kind, trained_run, tmp_path, digit_png):
    path, words = make_damaged(kind, tmp_path, trained_run)
    proc = subprocess.run([str(CONSOLE_SCRIPT), "predict", "--checkpoint", str(path), str(digit_png)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc.stderr, *words)


def test_debug_flag_shows_the_traceback(trained_run, tmp_path, digit_png):
    path, _ = make_damaged("truncated", tmp_path, trained_run)
    proc = subprocess.run([str(CONSOLE_SCRIPT), "predict", "--debug", "--checkpoint", str(path), str(digit_png)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "CheckpointError" in proc.stderr


def test_checkpoint_of_another_model_name(trained_run, tmp_path, digit_png, capsys):
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    path = tmp_path / "v3.pt"
    torch.save({**ckpt, "model_name": "inception_v3"}, path)
    with pytest.raises(CheckpointError, match="is a inception_v3 checkpoint, not googlenet_small"):
        create_model("googlenet_small", **SMALL, weights=str(path))
    rc, err = run_cli(
        ["predict", "--model", "googlenet_small", "--checkpoint", str(path), str(digit_png)], capsys
    )
    assert rc == 2
    one_error_line(err, "is a inception_v3 checkpoint, not googlenet_small")
    rc, err = run_cli(["train", *TINY, "--epochs", "2", "--resume", str(path), "--output-dir", str(tmp_path / "o")],
                      capsys)  # fmt: skip
    assert rc == 2
    one_error_line(err, "is a inception_v3 checkpoint, not googlenet_small")


# --------------------------------------------------------------------------------------------------
# 3. Images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares a huge size (a few bytes on disk: a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def make_image(kind: str, d: Path) -> Path:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    if kind == "corrupt_jpeg":
        good = d / "good.jpg"
        Image.fromarray(rgb).save(good, quality=90)
        p = d / "corrupt.jpg"
        raw = good.read_bytes()
        sos = raw.index(b"\xff\xda")  # start of scan: headers intact, the pixel data cut in half
        p.write_bytes(raw[: sos + (len(raw) - sos) // 2])
    elif kind == "zero_bytes":
        p = d / "zero.png"
        p.write_bytes(b"")
    elif kind == "text_as_png":
        p = d / "notes.png"
        p.write_text("this is not an image\n")
    elif kind == "png_16bit":
        p = d / "deep.png"
        Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16).astype(np.uint16)).save(p)
        assert Image.open(p).mode.startswith("I")
    elif kind == "cmyk_jpeg":
        p = d / "cmyk.jpg"
        Image.fromarray(rgb).convert("CMYK").save(p)
        assert Image.open(p).mode == "CMYK"
    elif kind == "palette_png":
        p = d / "palette.png"
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p)
        assert Image.open(p).mode == "P"
    elif kind == "palette_alpha_png":
        p = d / "palette_alpha.png"
        im = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        im.info["transparency"] = 0
        im.save(p, transparency=0)
    elif kind == "huge":
        p = d / "huge.png"
        p.write_bytes(png_declaring(100_000, 100_000))
    elif kind == "one_pixel":
        p = d / "dot.png"
        Image.new("RGB", (1, 1), (200, 10, 10)).save(p)
    elif kind == "wide_strip":
        p = d / "strip.png"
        Image.fromarray(rng.integers(0, 256, (1, 300, 3), dtype=np.uint8)).save(p)
    else:
        raise AssertionError(kind)
    return p


READABLE = ["png_16bit", "cmyk_jpeg", "palette_png", "palette_alpha_png", "one_pixel", "wide_strip"]
UNREADABLE = {
    "corrupt_jpeg": "not a valid image",
    "zero_bytes": "the file is empty",
    "text_as_png": "not an image file PIL recognizes",
    "huge": "possible decompression bomb",
}


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("kind", READABLE)
def test_unusual_images_are_converted(kind, in_chans, tmp_path):
    x = read_image(make_image(kind, tmp_path), in_chans)
    assert x.dtype == torch.uint8 and x.dim() == 3 and x.shape[0] == in_chans


def test_16bit_png_keeps_its_range(tmp_path):
    p = tmp_path / "ramp.png"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(p)
    assert read_image(p, 1).flatten().tolist() == [0, 128, 255]


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_images_name_the_file(kind, tmp_path):
    p = make_image(kind, tmp_path)
    with pytest.raises(ImageReadError, match=UNREADABLE[kind]) as exc:
        read_image(p, 3)
    assert str(exc.value).startswith(f"cannot read image {p}:")


def test_decompression_bomb_guard_with_a_low_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 30):  # 144 pixels: PIL's warning range (limit..2x limit); 900: its error range
        p = tmp_path / f"{side}.png"
        Image.new("L", (side, side)).save(p)
        with pytest.raises(ImageReadError, match="decompression bomb"):
            read_image(p, 1)


def test_predict_on_every_kind_of_image(trained_run, tmp_path, capsys):
    files = [make_image(k, tmp_path) for k in [*READABLE, *UNREADABLE]]
    rc = cli(["predict", "--checkpoint", str(trained_run / "best.pt"), "--json", *map(str, files)])
    cap = capsys.readouterr()
    assert rc == 2 and "Traceback" not in cap.err
    import json

    res = {r["path"]: r for r in json.loads(cap.out)}
    for f in files[: len(READABLE)]:
        assert "top" in res[str(f)], res[str(f)]
    for f, kind in zip(files[len(READABLE) :], UNREADABLE, strict=True):
        assert UNREADABLE[kind] in res[str(f)]["error"]
        assert f"error: cannot read image {f}" in cap.err


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png"
                )
    bad = [
        make_image("corrupt_jpeg", root / "train" / "cat"),
        make_image("zero_bytes", root / "train" / "dog"),
    ]
    return root, bad


IMAGEFOLDER_RUN = ["train", "--dataset", "imagefolder", "--model", "googlenet_small", "--model-kwargs", "width=0.125",
                   "--epochs", "1", "--batch-size", "4", "--input-size", "16", "--no-progress", "--no-plots",
                   "--no-tensorboard", "--threads", "1"]  # fmt: skip


def test_imagefolder_skip_bad_images_skips_and_counts(image_folder, tmp_path, capsys):
    root, _ = image_folder
    rc, err = run_cli([*IMAGEFOLDER_RUN, "--data", str(root), "--output-dir", str(tmp_path / "o"),
                       "--skip-bad-images"], capsys)  # fmt: skip
    assert rc == 0, err
    assert "skipped 2 unreadable images (--skip-bad-images)" in err


def test_imagefolder_bad_image_stops_with_its_name(image_folder, tmp_path, capsys):
    root, bad = image_folder
    rc, err = run_cli([*IMAGEFOLDER_RUN, "--data", str(root), "--output-dir", str(tmp_path / "o")], capsys)
    assert rc == 2
    one_error_line(err, "cannot read image")
    assert any(f"error: cannot read image {b}:" in err for b in bad), err


# --------------------------------------------------------------------------------------------------
# 4. Arguments (train's flags and recipes: tests/test_train.py::test_bad_arguments, ::test_recipe_*)


@pytest.mark.parametrize(
    "argv, message",
    [(["train", "--dataset", "digits", "--batch-size", "-4"], "--batch-size must be a positive integer, got -4"),
     (["train", "--dataset", "digits", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
     (["train", "--dataset", "digits", "--lr", "-0.1"], "--lr must be positive, got -0.1"),
     (["train", "--dataset", "digits", "--lr", "nan"], "--lr must be positive"),
     (["train", "--dataset", "digits", "--workers", "-1"], "--workers must not be negative"),
     (["train", "--dataset", "digits", "--model-kwargs", "widht=0.5"], "bad --model-kwargs for googlenet_small"),
     (["train", "--dataset", "digits", "--model-kwargs", "width"], "--model-kwargs expects KEY=VALUE"),
     (["train", "--dataset", "digits", "--model-kwargs", "norm=gn"], "unknown norm 'gn'"),
     (["eval", "--model", "googlenett", "--weights", "x"], "unknown model 'googlenett'"),
     (["eval", "--checkpoint", "CKPT", "--dataset", "mnist2"], "unknown dataset 'mnist2'"),
     (["eval", "--checkpoint", "CKPT", "--batch-size", "0"], "--batch-size must be positive"),
     (["eval", "--checkpoint", "CKPT", "--dataset", "cifar10", "--data", "OUT"], "CIFAR-10 not found"),
     (["eval", "--model", "googlenet_small", "--weights", "nope"], "weights 'nope' is neither a file nor a weight"),
     (["eval", "--checkpoint", "/nonexistent/x.pt"], "checkpoint /nonexistent/x.pt does not exist"),
     (["eval"], "give --checkpoint FILE"),
     (["predict", "--checkpoint", "CKPT", "--topk", "0", "x.png"], "--topk must be at least 1, got 0"),
     (["predict", "--model", "googlenett", "--weights", "x", "x.png"], "unknown model 'googlenett'"),
     (["predict", "--model", "googlenet_small", "x.png"], "--model needs --weights"),
     (["summary", "googlenett"], "unknown model 'googlenett'"),
     (["summary", "googlenet_small", "--in-chans", "0"], "in_chans must be a positive integer, got 0"),
     (["summary", "googlenet_small", "--num-classes", "-1"], "num_classes must be a non-negative integer, got -1"),
     (["summary", "googlenet_small", "--input-size", "0", "0"], "input size must be two positive integers"),
     (["summary", "inception_v3", "--input-size", "40", "40"], "too small"),
     (["export", "googlenett", "-o", "OUT/x.onnx"], "unknown model 'googlenett'"),
     (["export", "googlenet_small", "-o", "OUT/x.onnx", "--batch", "-3"], "--batch must be 'dynamic' or a positive integer"),
     (["export", "googlenet_small", "-o", "OUT/x.txt"], "cannot tell the format"),
     (["export", "-o", "OUT/x.onnx"], "give a model NAME or --checkpoint FILE"),
     (["nosuchcommand"], "unknown command 'nosuchcommand'")],
)  # fmt: skip
def test_bad_arguments_of_every_command(argv, message, trained_run, tmp_path, capsys):
    argv = [a.replace("CKPT", str(trained_run / "best.pt")).replace("OUT", str(tmp_path)) for a in argv]
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert "Traceback" not in err
    assert f"error: {message}" in err or message in err.splitlines()[-1], err
    assert err.splitlines()[-1].startswith("error: ")


def test_unknown_recipe_key_in_user_yaml_names_the_key(tmp_path, capsys):
    bad = tmp_path / "r.yaml"
    bad.write_text("epochs: 1\nbatch_size: 8\nmomentun: 0.9\n")
    rc, err = run_cli(["train", "--recipe", str(bad)], capsys)
    assert rc == 2
    one_error_line(err, "unknown key 'momentun'")
    bad.write_text("- a list\n- not a mapping\n")
    rc, err = run_cli(["train", "--recipe", str(bad)], capsys)
    assert rc == 2
    one_error_line(err, "must be a mapping")
    bad.write_text("epochs: [1\n")
    rc, err = run_cli(["train", "--recipe", str(bad)], capsys)
    assert rc == 2
    one_error_line(err, "not valid YAML")


_ints_or_junk = st.one_of(st.integers(-2, 12), st.sampled_from([2.5, "3", True, None]))


@settings(max_examples=25, deadline=None)
@given(
    num_classes=_ints_or_junk,
    in_chans=_ints_or_junk,
    width=st.one_of(st.sampled_from([0.0, -0.25, 0.0625, 0.125, 0.25]), st.floats(0.01, 0.25)),
    stem_stride=st.sampled_from([0, 1, 2, 3]),
    norm=st.sampled_from(["bn", "none", "gn"]),
    act=st.sampled_from(["relu", "leaky_relu", "elu", "tanh", "gelu"]),
    pool=st.sampled_from(["max", "avg", "min"]),
    branch5x5=st.sampled_from(["3x3", "5x5", "3x3x2", "7x7"]),
    x_chans=st.integers(1, 4),
    height=st.integers(0, 40),
    width_px=st.integers(1, 40),
    batch=st.integers(1, 2),
)
def test_googlenet_small_any_kwargs_and_input(
    num_classes, in_chans, width, stem_stride, norm, act, pool, branch5x5, x_chans, height, width_px, batch
):
    """Any constructor flags and input shape: a valid output or a ValueError, never another exception."""
    kwargs = dict(width=width, stem_stride=stem_stride, norm=norm, act=act, pool=pool, branch5x5=branch5x5)
    try:
        model = create_model("googlenet_small", num_classes=num_classes, in_chans=in_chans, **kwargs)
    except ValueError:
        return
    x = torch.randn(batch, x_chans, height, width_px)
    try:
        with torch.no_grad():
            y = model.eval()(x)
    except ValueError:
        return
    expected = 1000 if num_classes is None else num_classes
    assert x_chans == (3 if in_chans is None else in_chans)
    assert y.shape == (batch, expected if expected else model.num_features)
    assert torch.isfinite(y).all()


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(
        [
            "googlenet",
            "googlenet_paper",
            "inception_v3",
            "inception_v4",
            "inception_resnet_v1",
            "inception_resnet_v2",
            "bn_inception",
        ]
    ),  # fmt: skip
    num_classes=_ints_or_junk,
    in_chans=_ints_or_junk,
    x_chans=st.integers(1, 4),
    side=st.sampled_from([0, 1, 20, 40, 75, 96]),
)
def test_big_models_any_kwargs_and_input_on_meta(name, num_classes, in_chans, x_chans, side):
    """The big models on the meta device (no memory, no compute): output shape or a ValueError."""
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    except ValueError:
        return
    try:
        y = model.eval()(torch.empty(1, x_chans, side, side, device="meta"))
    except ValueError:
        return
    assert x_chans == (3 if in_chans is None else in_chans)  # None means the default, 3 channels
    expected = 1000 if num_classes is None else num_classes  # None means the default, 1000 classes
    assert y.shape == (1, expected if expected else model.num_features)


# --------------------------------------------------------------------------------------------------
# 5. Faults: SIGKILL mid-epoch and mid-write, full disk. SIGTERM: test_train.py::test_sigterm_saves_and_resume_matches

def kill_during(tmp_path: Path, mode: str, at: int) -> Path:
    proc, out, ready = start_hooked_train(tmp_path, mode, at)
    deadline = time.time() + 240
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate(timeout=10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return out


def test_sigkill_mid_epoch_resumes_to_the_same_weights(tmp_path, fault_reference):
    out = kill_during(tmp_path, "step", at=6)  # epoch 1 (0-based), step 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert cli(["train", *TINY, *FAULT_RUN, "--output-dir", str(out), "--resume", "auto"]) == 0
    assert_same_weights(torch.load(out / "checkpoint.pt", weights_only=True)["model"], fault_reference)


def test_sigkill_mid_checkpoint_write_keeps_the_last_complete_one(tmp_path, fault_reference):
    # saves: checkpoint.pt (epoch 1), best.pt (epoch 1), then checkpoint.pt (epoch 2): killed half-written
    out = kill_during(tmp_path, "save", at=3)
    leftovers = list(out.glob(".checkpoint.pt.*.tmp"))
    assert leftovers, "the kill should land while the temp file is being written"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1  # complete and readable
    assert cli(["train", *TINY, *FAULT_RUN, "--output-dir", str(out), "--resume", "auto"]) == 0
    assert_same_weights(torch.load(out / "checkpoint.pt", weights_only=True)["model"], fault_reference)


def test_full_disk_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch, capsys):
    real_save = torch.save
    calls: list[Path] = []
    before: dict[str, bytes] = {}

    def save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        calls.append(Path(f))
        if len(calls) == 3:  # checkpoint.pt of epoch 2
            before["ckpt"] = (tmp_path / "checkpoint.pt").read_bytes()
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    rc, err = run_cli(
        ["train", *TINY, "--epochs", "2", "--subset", "64", "--output-dir", str(tmp_path)], capsys
    )
    assert rc == 2
    assert "Traceback" not in err
    assert f"error: cannot write {tmp_path / 'checkpoint.pt'}: No space left on device; the previous " \
           "checkpoint.pt is kept" in err  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == before["ckpt"]
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_unwritable_output_dir_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, err = run_cli(["train", *TINY, "--epochs", "1", "--subset", "64", "--output-dir", str(blocker / "run")],
                      capsys)  # fmt: skip
    assert rc == 2
    one_error_line(err, str(blocker))


# --------------------------------------------------------------------------------------------------
# 6. Numerical: NaN/inf in the loss and in model inputs: test_train.py::test_nan_loss_stops_with_clear_message


def test_nan_in_input_images_through_the_data_path(tmp_path, monkeypatch, capsys):
    import inceptionnet.data as D

    real = D.TensorImages.__getitem__

    def with_nan(self: D.TensorImages, i: int) -> tuple[torch.Tensor, int]:
        x, y = real(self, i)
        return x.index_fill(-1, torch.tensor([0]), float("nan")), y

    monkeypatch.setattr(D.TensorImages, "__getitem__", with_nan)
    rc, err = run_cli(
        ["train", *TINY, "--epochs", "1", "--subset", "64", "--output-dir", str(tmp_path)], capsys
    )
    assert rc == 2 and "Traceback" not in err
    assert "error: non-finite values in the input batch at epoch 0, step 0 (batch index 0)" in err


def test_reliability_doc_names_existing_tests():
    import re

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "RELIABILITY.md").read_text()
    names = {"R": "test_reliability", "T": "test_train", "RT": "test_reliability_train",
             "RI": "test_reliability_inference", "RD": "test_reliability_data"}  # fmt: skip
    files = {k: next((root / "tests").rglob(f"{v}.py")).read_text() for k, v in names.items()}
    refs = set(re.findall(r"`(R[TID]?|T)::(test_\w+)`", doc))
    assert len(refs) > 20
    missing = [f"{f}::{n}" for f, n in sorted(refs) if f"def {n}(" not in files[f]]
    assert not missing, missing
