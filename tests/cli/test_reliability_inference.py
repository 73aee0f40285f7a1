"""Reliability of the inference side (issue 21): a hostile audit of eval, predict, export, summary,
list and bench, and of the Python API they share (``create_model``, ``load_for_inference``, the
models' input check).

Outputs never replace inputs; failed writes are one line with the previous file kept; ``--device``
values that cannot run; NaN/inf weights and outputs; checkpoints whose class list, metadata or
kind is wrong; bad arguments of every flag and every file argument. /tmp/rel_inference.md (and
docs/RELIABILITY.md once merged) lists each case with its test. Tiny models only: googlenet_small
width 0.125, 1 channel, 10 classes, 8 x 8 inputs.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import re
import shutil
import subprocess
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SMALL, one_error_line
from inceptionnet import bench, create_model
from inceptionnet.checkpoint import load_for_inference
from inceptionnet.cli import main as cli
from inceptionnet.data import InputConfig
from inceptionnet.errors import CheckpointError, InputShapeError, NonFiniteError, OutputWriteError
from inceptionnet.fileio import atomic_torch_save, atomic_write_text, file_kind, json_text, load_file
from inceptionnet.models import fit_state_dict

CLASSES = [f"c{i}" for i in range(10)]
ICFG = InputConfig(8, 1, (0.3057,), (0.3806,), 1.0, "bilinear", "digits")
STRICT = {"parse_constant": lambda c: (_ for _ in ()).throw(ValueError(f"invalid JSON constant {c}"))}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``inceptionnet ARGV`` in-process: (exit code, stdout, stderr); argparse's exit is an exit code."""
    capsys.readouterr()
    try:
        rc = cli(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def usage_error(err: str, *needles: str) -> None:
    """argparse's refusal: usage, then one ``PROG: error: argument --flag: ...`` line."""
    last = err.strip().splitlines()[-1]
    assert "error: argument" in last and "Traceback" not in err, err
    for n in needles:
        assert n in last, (n, last)


def checkpoint_dict(**override: Any) -> dict[str, Any]:
    """A checkpoint in the training layout (train/state.py) of the tiny model."""
    torch.manual_seed(0)
    m = create_model("googlenet_small", **SMALL)
    ck: dict[str, Any] = {
        "version": 1, "model": m.state_dict(), "model_name": "googlenet_small",
        "model_kwargs": {"width": 0.125}, "classes": list(CLASSES), "data_cfg": ICFG.to_dict(), "epoch": 1,
    }  # fmt: skip
    ck.update(override)
    return ck


def save(path: Path, **override: Any) -> Path:
    torch.save(checkpoint_dict(**override), path)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L").save(p)
    return p


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where`` (root only: skipped with the reason otherwise)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
            pytest.fail(f"{where} was still busy: a file on it was left open")


# --------------------------------------------------------------------------------------------------
# 1. No command writes its output over one of its inputs


@pytest.mark.parametrize("how", ["same", "dotdot", "symlink", "hardlink", "weights"])
def test_export_refuses_to_overwrite_its_input(how, good, tmp_path, capsys):
    ckpt = save(tmp_path / "best.pt")
    before = ckpt.read_bytes()
    out = {"same": ckpt, "dotdot": tmp_path / "sub" / ".." / "best.pt", "symlink": tmp_path / "link.pt",
           "hardlink": tmp_path / "hard.pt", "weights": ckpt}[how]  # fmt: skip
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        out.symlink_to(ckpt)
    elif how == "hardlink":
        os.link(ckpt, out)
    src = ["googlenet_small", "--weights", str(ckpt)] if how == "weights" else ["--checkpoint", str(ckpt)]
    rc, _, err = run(["export", *src, "-o", str(out)], capsys)
    assert rc == 2
    flag = "--weights" if how == "weights" else "--checkpoint"
    one_error_line(err, f"is the {flag} file itself", "would replace the input")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("kind", ["checkpoint", "safetensors", "png"])
def test_export_refuses_to_replace_a_file_that_is_no_export(kind, good, png, tmp_path, capsys):
    if kind == "checkpoint":
        victim = save(tmp_path / "checkpoint.pt")  # another run's checkpoint, named like a TorchScript file
        words = "is a PyTorch checkpoint, not an exported model"
    elif kind == "safetensors":
        from safetensors.torch import save_file

        victim = tmp_path / "w.onnx"
        save_file({"a": torch.zeros(3)}, str(victim))
        words = "is a safetensors file"
    else:
        victim = tmp_path / "photo.onnx"
        victim.write_bytes(png.read_bytes())
        words = "is a PNG image"
    before = victim.read_bytes()
    rc, _, err = run(
        ["export", "--checkpoint", str(good), "--format", "torchscript", "-o", str(victim)], capsys
    )
    assert rc == 2
    one_error_line(err, str(victim), words, "refusing to replace it")
    assert victim.read_bytes() == before


def test_export_output_under_a_file_fails_before_loading(good, tmp_path, capsys, monkeypatch):
    import inceptionnet.commands.export as X

    monkeypatch.setattr(X, "open_model", lambda *a, **k: pytest.fail("loaded before checking -o"))
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc, _, err = run(["export", "--checkpoint", str(good), "-o", str(blocker / "m.onnx")], capsys)
    assert rc == 2
    one_error_line(err, "-o/--output", f"{blocker} is a file, not a directory")


@pytest.fixture
def no_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench must refuse before anything is timed or built."""
    monkeypatch.setattr(bench, "gemm_peak_gflops", lambda *a, **k: pytest.fail("the benchmark ran"))
    monkeypatch.setattr(bench, "open_bench_models", lambda *a, **k: pytest.fail("the benchmark ran"))


def test_bench_bad_output_dir_fails_before_the_benchmark(tmp_path, capsys, no_timing):
    afile = tmp_path / "notadir"
    afile.write_text("x")
    base = ["bench", "--models", "googlenet_small", "--batch-sizes", "1", "--input-size", "8"]
    rc, _, err = run([*base, "--output-dir", str(afile)], capsys)
    assert rc == 2
    one_error_line(err, "--output-dir", f"{afile} is a file, not a directory")
    rc, _, err = run([*base, "--output-dir", str(afile / "sub")], capsys)
    assert rc == 2
    one_error_line(err, "--output-dir", "is a file, not a directory")
    (tmp_path / "out" / "bench.json").mkdir(parents=True)
    rc, _, err = run([*base, "--output-dir", str(tmp_path / "out")], capsys)
    assert rc == 2
    one_error_line(err, "--output-dir", "bench.json is a directory")
    rc, _, err = run([*base, "--output-dir", ""], capsys)
    assert rc == 2
    one_error_line(err, "--output-dir is empty")


def test_unwritable_output_dir_read_only_tmpfs(tmp_path, good, capsys, no_timing):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        base = ["bench", "--models", "googlenet_small", "--batch-sizes", "1", "--input-size", "8"]
        rc, _, err = run([*base, "--output-dir", str(ro / "results")], capsys)
        assert rc == 2
        one_error_line(err, "--output-dir", "is not writable", "Read-only file system")
        rc, _, err = run([*base, "--output-dir", str(ro)], capsys)
        assert rc == 2
        one_error_line(err, "--output-dir", "is not writable")
        rc, _, err = run(["export", "--checkpoint", str(good), "-o", str(ro / "m.onnx")], capsys)
        assert rc == 2
        one_error_line(err, "-o/--output", "is not writable")


# --------------------------------------------------------------------------------------------------
# 2. Saving errors: one OutputWriteError line, the previous file kept, no temp file left


def test_full_disk_on_a_real_tmpfs(tmp_path, capsys):
    with tmpfs(tmp_path / "small", "size=64k") as disk:
        target = disk / "checkpoint.pt"
        target.write_bytes(b"the previous checkpoint")
        with pytest.raises(OutputWriteError) as exc:
            atomic_torch_save({"w": torch.zeros(100_000)}, target)  # 400 KB into 64 KB
        msg = str(exc.value)
        assert msg.startswith(f"cannot write {target}: No space left on device")
        assert msg.endswith("the previous checkpoint.pt is kept") and "\n" not in msg
        assert exc.value.errno == errno.ENOSPC
        assert target.read_bytes() == b"the previous checkpoint"
        assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pt"]  # temp file removed
        assert shutil.disk_usage(disk).free > 48 * 1024  # ... and closed: its space is given back
        with pytest.raises(OutputWriteError, match="No space left on device"):
            atomic_write_text(disk / "big.txt", "x" * 200_000)
        assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pt"]


def test_runtime_error_from_torch_save_is_one_write_error(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    target.write_bytes(b"previous")

    def failing_save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        Path(f).write_bytes(b"half")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OutputWriteError) as exc:
        atomic_torch_save({"a": 1}, target)
    assert str(exc.value).startswith(f"cannot write {target}: ")
    assert "PytorchStreamWriter failed writing file" in str(exc.value)
    assert str(exc.value).endswith("the previous best.pt is kept")
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    monkeypatch.setattr(
        torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("basic_ios::clear: iostream error"))
    )
    with pytest.raises(
        OutputWriteError, match=r"cannot write .*new\.pt: basic_ios::clear.*nothing was written"
    ):
        atomic_torch_save({"a": 1}, tmp_path / "new.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_export_write_failure_is_one_line_and_keeps_the_old_file(good, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier export")
    real = torch.jit.save

    def full_disk(m: Any, f: Any, *a: Any, **k: Any) -> None:
        real(m, f, *a, **k)
        raise RuntimeError("PytorchStreamWriter failed writing file code/__torch__.py: file write failed")

    monkeypatch.setattr(torch.jit, "save", full_disk)
    # --overwrite: these bytes are no export of ours, which the output rule keeps without it
    rc, _, err = run(["export", "--checkpoint", str(good), "-o", str(out), "--overwrite"], capsys)
    assert rc == 2
    one_error_line(
        err, f"cannot write {out}", "PytorchStreamWriter failed writing file", "the previous model.pt is kept"
    )
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# --------------------------------------------------------------------------------------------------
# 3. --device values that cannot run: one line naming the flag

BAD_DEVICES = [
    "mps",
    "meta",
    "tpu",
    "xla",
    "banana",
    "",
    *([] if torch.cuda.is_available() else ["cuda", "cuda:1"]),
]


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("command", ["eval", "predict", "bench"])
def test_bad_device_is_one_line(command, device, good, png, capsys, monkeypatch):
    monkeypatch.setattr(bench, "gemm_peak_gflops", lambda *a, **k: pytest.fail("the benchmark ran"))
    argv = {
        "eval": ["eval", "--checkpoint", str(good), "--dataset", "digits", "--limit", "8"],
        "predict": ["predict", "--checkpoint", str(good), str(png)],
        "bench": ["bench", "--models", "googlenet_small", "--input-size", "8", "--batch-sizes", "1"],
    }[command]
    rc, _, err = run([*argv, "--device", device], capsys)
    assert rc == 2
    line = one_error_line(err, "--device")
    if device.startswith("cuda"):
        assert "no CUDA device" in line or "CUDA devices" in line
    elif device:
        assert "not supported" in line or "not a device" in line


# --------------------------------------------------------------------------------------------------
# 4. Non-finite weights and outputs


@pytest.fixture(scope="module")
def nan_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ck = checkpoint_dict()
    ck["model"]["fc.weight"][0, 0] = float("nan")
    ck["model"]["conv1.bn.running_var"][1] = float("inf")
    path = tmp_path_factory.mktemp("nan") / "diverged.pt"
    torch.save(ck, path)
    return path


def test_nan_weights_are_refused_naming_the_file(nan_ckpt, png, tmp_path, capsys):
    words = (str(nan_ckpt), "non-finite (NaN/inf) weights in 2 tensors", "conv1.bn.running_var", "fc.weight")
    rc, _, err = run(["predict", "--checkpoint", str(nan_ckpt), str(png)], capsys)
    assert rc == 2
    one_error_line(err, *words, "--allow-nan")
    rc, _, err = run(["eval", "--checkpoint", str(nan_ckpt), "--dataset", "digits", "--limit", "16"], capsys)
    assert rc == 2
    one_error_line(err, *words, "--allow-nan")
    rc, _, err = run(["export", "--checkpoint", str(nan_ckpt), "-o", str(tmp_path / "m.onnx")], capsys)
    assert rc == 2
    assert "--allow-nan" not in one_error_line(err, *words)  # export has no such flag: NaN cannot verify
    with pytest.raises(NonFiniteError):
        load_for_inference(str(nan_ckpt), None, None)


def test_allow_nan_reports_null_in_valid_json(nan_ckpt, png, capsys):
    rc, out, err = run(["predict", "--checkpoint", str(nan_ckpt), "--allow-nan", "--json", str(png)], capsys)
    assert rc == 0, err
    res = json.loads(out, **STRICT)
    assert all(t["prob"] is None for t in res[0]["top"])
    rc, out, err = run(["eval", "--checkpoint", str(nan_ckpt), "--dataset", "digits", "--limit", "16",
                        "--allow-nan", "--json", "--no-progress"], capsys)  # fmt: skip
    assert rc == 0, err
    res = json.loads(out, **STRICT)
    assert res["loss"] is None and res["images"] == 16


def test_finite_weights_with_overflowing_outputs(tmp_path, png, capsys):
    ck = checkpoint_dict()
    ck["model"]["fc.weight"].fill_(3e38)  # finite, but the logits overflow to inf
    path = tmp_path / "overflow.pt"
    torch.save(ck, path)
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, f"the model's output for {png} is not finite", "--allow-nan")
    rc, _, err = run(["eval", "--checkpoint", str(path), "--dataset", "digits", "--limit", "16"], capsys)
    assert rc == 2
    one_error_line(err, "outputs on digits test are not finite", "--allow-nan")


def test_json_text_is_always_valid_json():
    text = json_text({"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": (np.float64("nan"),)})
    assert json.loads(text, **STRICT) == {"a": None, "b": [1.0, None, None], "c": [None]}


def test_summary_and_list_json_are_valid(capsys):
    rc, out, _ = run(["summary", "googlenet_small", "--input-size", "8", "8", "--format", "json"], capsys)
    assert rc == 0 and json.loads(out, **STRICT)["model"] == "googlenet_small"
    rc, out, _ = run(["list", "googlenet_small", "--json"], capsys)
    assert rc == 0 and json.loads(out, **STRICT)[0]["model"] == "googlenet_small"


# --------------------------------------------------------------------------------------------------
# 5. A class list that does not match the classifier: an error in inference, a new head in fine-tuning


def test_class_list_not_matching_the_classifier(tmp_path, png, capsys):
    path = save(tmp_path / "mixed.pt", classes=[f"c{i}" for i in range(12)])
    msg = "lists 12 classes but its classifier has 10 outputs"
    for argv in (["predict", "--checkpoint", str(path), str(png)],
                 ["eval", "--checkpoint", str(path), "--dataset", "digits", "--limit", "8"],
                 ["export", "--checkpoint", str(path), "-o", str(tmp_path / "m.onnx")]):  # fmt: skip
        rc, _, err = run(argv, capsys)
        assert rc == 2
        one_error_line(err, str(path), msg)
    with pytest.raises(CheckpointError, match=msg):
        load_for_inference(str(path), None, None)


def test_inference_is_strict_and_fine_tuning_keeps_the_new_head(tmp_path):
    sd = create_model("googlenet_small", **SMALL).state_dict()
    # strict fit_state_dict: a classifier of another size is an error, not a random head
    m12 = create_model("googlenet_small", num_classes=12, in_chans=1, width=0.125)
    with pytest.raises(
        CheckpointError, match="fc.weight has 10 outputs in the file but the model was built for 12 classes"
    ):
        fit_state_dict(m12, sd, source="checkpoint X", new_head_ok=False)
    no_head = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    with pytest.raises(CheckpointError, match="the file has no fc classifier"):
        fit_state_dict(create_model("googlenet_small", **SMALL), no_head, new_head_ok=False)
    # what train --weights does (train/build.py: create_model(..., weights=...), default new_head_ok=True)
    ckpt = save(tmp_path / "pre.pt")
    with pytest.warns(UserWarning, match="classifier fc re-initialized for 5 classes"):
        ft = create_model("googlenet_small", num_classes=5, in_chans=1, weights=str(ckpt))
    assert ft.num_classes == 5
    with pytest.raises(CheckpointError, match="built for 5 classes"):
        create_model("googlenet_small", num_classes=5, in_chans=1, weights=str(ckpt), new_head_ok=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same classes: no warning, no error
        create_model("googlenet_small", num_classes=10, in_chans=1, weights=str(ckpt), new_head_ok=False)


# --------------------------------------------------------------------------------------------------
# 6. Damaged metadata, foreign checkpoints, files that are no checkpoint at all

DAMAGED_META = [
    ({"model_name": 3}, "its model_name 3 is not a model name"),
    ({"model_name": ""}, "its model_name '' is not a model name"),
    ({"model_name": "resnet50"}, "holds a model this version does not have: unknown model 'resnet50'"),
    ({"model_kwargs": [1, 2]}, "its model_kwargs [1, 2] are not a mapping"),
    ({"model_kwargs": {"depth": 50}}, "do not build googlenet_small"),
    ({"model_kwargs": {"width": "wide"}}, "do not build googlenet_small"),
    ({"model_kwargs": {"width": float("nan")}}, "width must be positive and finite"),
    ({"classes": "0123456789"}, "are not a list of class names"),
    ({"classes": list(range(10))}, "are not a list of class names"),
    ({"data_cfg": "digits"}, "its data_cfg is a str, not a mapping"),
    ({"data_cfg": {"input_size": 8}}, "its data_cfg lacks in_chans, mean, std"),
    ({"data_cfg": {**ICFG.to_dict(), "mean": ["a"]}}, "data_cfg mean is ['a'], not 1 finite numbers"),
    ({"data_cfg": {**ICFG.to_dict(), "std": [0.0]}}, "data_cfg std is [0.0], not 1 finite positive numbers"),
    ({"data_cfg": {**ICFG.to_dict(), "input_size": -8}}, "data_cfg input_size is -8, not a positive integer"),
    ({"data_cfg": {**ICFG.to_dict(), "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3}},
     "its data_cfg says 3 input channels but its first conv takes 1"),
    ({"data_cfg": {**ICFG.to_dict(), "crop_pct": "big"}}, "data_cfg crop_pct is 'big'"),
    ({"data_cfg": {**ICFG.to_dict(), "interpolation": 3}}, "data_cfg interpolation is 3"),
    ({"data_cfg": {**ICFG.to_dict(), "input_range": [1, 0]}}, "data_cfg input_range [1, 0] is empty"),
    ({"model_name": "googlenet", "model_kwargs": {}}, "does not fit"),  # another model's name
    ({"model_kwargs": {"width": 0.25}}, "tensor conv1.conv.weight has shape (8, 1, 3, 3) in the file but (16, 1, 3, 3)"),
]  # fmt: skip


@pytest.mark.parametrize("override, message", DAMAGED_META, ids=[m for _, m in DAMAGED_META])
def test_damaged_metadata_is_one_line_naming_the_file(override, message, tmp_path, png, capsys):
    path = save(tmp_path / "damaged.pt", **override)
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, str(path), message)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_for_inference(str(path), None, None)


def _safetensors(path: Path, **meta: str) -> Path:
    from safetensors.torch import save_file

    ck = checkpoint_dict()
    base = {"model_name": "googlenet_small", "model_kwargs": json.dumps({"width": 0.125}),
            "classes": json.dumps(CLASSES), "data_cfg": json.dumps(ICFG.to_dict())}  # fmt: skip
    save_file({k: v.contiguous() for k, v in ck["model"].items()}, str(path), metadata={**base, **meta})
    return path


@pytest.mark.parametrize("key", ["model_kwargs", "classes", "data_cfg"])
def test_safetensors_with_invalid_json_metadata(key, tmp_path, png, capsys):
    path = _safetensors(tmp_path / "best.safetensors", **{key: "{not json"})
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    one_error_line(err, f"safetensors file {path}: its metadata {key} is not valid JSON")


def test_safetensors_with_metadata_works_as_weights_and_under_any_name(tmp_path, png, capsys):
    path = _safetensors(tmp_path / "best.safetensors")
    rc, out, err = run(["predict", "--checkpoint", str(path), "--json", str(png)], capsys)
    assert rc == 0, err
    expected = json.loads(out)[0]["top"]
    assert [t["label"] for t in expected][0].startswith("c")
    rc, out, err = run(
        ["predict", "--model", "googlenet_small", "--weights", str(path), "--json", str(png)], capsys
    )
    assert rc == 0, err  # its width and classes come from the metadata
    assert json.loads(out)[0]["top"] == expected
    renamed = tmp_path / "best.bin"
    renamed.write_bytes(path.read_bytes())
    rc, out, err = run(["predict", "--checkpoint", str(renamed), "--json", str(png)], capsys)
    assert rc == 0, err
    assert json.loads(out)[0]["top"] == expected


def _foreign(kind: str, d: Path, png: Path) -> Path:
    p = d / f"{kind}.pt"
    if kind == "png":
        p.write_bytes(png.read_bytes())
    elif kind == "jpeg":
        Image.new("RGB", (4, 4)).save(p, format="JPEG")
    elif kind == "text":
        p.write_text("model: googlenet\nepochs: 10\n")
    elif kind == "json":
        p.write_text(json.dumps({"model": "googlenet"}))
    elif kind == "gzip":
        p.write_bytes(gzip.compress(b"weights"))
    elif kind == "zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "no checkpoint here")
    elif kind == "npy":
        np.save(p.with_suffix(".npy"), np.zeros(3))
        p.with_suffix(".npy").rename(p)
    elif kind == "npz":
        np.savez(p.with_suffix(".npz"), a=np.zeros(3))
        p.with_suffix(".npz").rename(p)
    elif kind == "hdf5":
        p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    elif kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(p))
    elif kind == "onnx":
        p = d / "model.onnx"
        p.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.0")
    else:
        raise AssertionError(kind)
    return p


FOREIGN = {
    "png": "it is a PNG image, not a PyTorch checkpoint",
    "jpeg": "it is a JPEG image, not a PyTorch checkpoint",
    "text": "it is a text file, not a PyTorch checkpoint",
    "json": "it is a text file, not a PyTorch checkpoint",
    "gzip": "it is a gzip archive, not a PyTorch checkpoint",
    "zip": "it is a zip archive without data.pkl, not a PyTorch checkpoint",
    "npy": "it is a NumPy .npy array, not a PyTorch checkpoint",
    "npz": "it is a NumPy .npz archive, not a PyTorch checkpoint",
    "hdf5": "it is an HDF5 file (Keras / h5py), not a PyTorch checkpoint",
    "torchscript": "it is a TorchScript file (an exported model), not a PyTorch checkpoint; load it with torch.jit.load",
    "onnx": "it is an ONNX file (an exported model), not a PyTorch checkpoint; run an exported ONNX file with",
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_file_that_is_no_checkpoint_says_what_it_is(kind, tmp_path, png, capsys):
    path = _foreign(kind, tmp_path, png)
    rc, _, err = run(["predict", "--checkpoint", str(path), str(png)], capsys)
    assert rc == 2
    line = one_error_line(err, f"cannot read checkpoint {path}", FOREIGN[kind])
    assert "unsafe" not in line
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        create_model("googlenet_small", **SMALL, weights=str(path))


def test_file_kind_of_real_checkpoints(good, tmp_path):
    assert file_kind(good) == "checkpoint"
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert file_kind(legacy) == "pickle" and torch.equal(load_file(legacy)["a"], torch.zeros(2))


# --------------------------------------------------------------------------------------------------
# 7. The Python API: model names, builder flags, input tensors


@pytest.mark.parametrize("name", [None, 3, ["googlenet"], b"googlenet"])
def test_create_model_name_must_be_a_string(name):
    with pytest.raises(ValueError, match="the model name must be a string such as 'googlenet'"):
        create_model(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"width": float("inf")}, "width must be positive and finite (at most 64), got inf"),
     ({"width": float("nan")}, "width must be positive and finite (at most 64), got nan"),
     ({"width": -0.5}, "width must be positive and finite"),
     ({"width": 0}, "width must be positive and finite"),
     ({"width": 1e30}, "width must be positive and finite (at most 64), got 1e+30"),
     ({"width": "wide"}, "width must be a number, got 'wide' (str)"),
     ({"width": True}, "width must be a number, got True (bool)"),
     ({"dropout": 1.5}, "dropout must be a finite number between 0 and 1, got 1.5"),
     ({"dropout": float("nan")}, "dropout must be a finite number between 0 and 1"),
     ({"bn_eps": 0.0}, "bn_eps must be positive and finite (at most 1), got 0.0")],
)  # fmt: skip
def test_create_model_bad_builder_flags_are_value_errors(kwargs, message):
    with torch.device("meta"), pytest.raises(ValueError) as exc:
        create_model("googlenet", **kwargs)
    assert message in str(exc.value)


def test_create_model_too_large_to_allocate_is_a_value_error():
    with pytest.raises(ValueError, match=r"cannot build googlenet_small\(.*num_classes=10000000000000"):
        create_model("googlenet_small", num_classes=10**13, in_chans=1, width=0.125)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return create_model("googlenet_small", **SMALL).eval()


@pytest.mark.parametrize(
    "make, message",
    [(lambda: np.zeros((1, 1, 8, 8), np.float32), "got numpy.ndarray; convert it with torch.from_numpy(x).float()"),
     (lambda: [[[[0.0] * 8] * 8]], "got list; convert it with torch.as_tensor(x).float()"),
     (lambda: 3, "got int; convert it with torch.as_tensor(x).float()"),
     (lambda: torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "got a tensor of dtype uint8; convert it with x.float() / 255"),
     (lambda: torch.zeros(1, 1, 8, 8, dtype=torch.int64), "got a tensor of dtype int64; convert it with x.float()"),
     (lambda: torch.zeros(1, 1, 8, 8, dtype=torch.bool), "got a tensor of dtype bool"),
     (lambda: torch.zeros(1, 1, 8, 8, dtype=torch.float64), "has float32 weights but got a float64 input; convert it with x.to(torch.float32)"),
     (lambda: torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16), "has float32 weights but got a bfloat16 input")],
)  # fmt: skip
def test_wrong_inputs_are_one_input_shape_error(make, message, tiny):
    for fn in (tiny, tiny.forward_features):
        with torch.no_grad(), pytest.raises(InputShapeError) as exc:
            fn(make())
        assert message in str(exc.value) and "GoogLeNet" in str(exc.value)
        assert isinstance(exc.value, ValueError)


def test_other_dtypes_keep_working_where_they_work(tiny):
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = tiny(x)
        for dt in (torch.bfloat16, torch.float16):  # under autocast: fp32 model, low-precision input
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert tiny(x.to(dt)).shape == (2, 10)
        double = create_model("googlenet_small", **SMALL).eval()
        double.load_state_dict(tiny.state_dict())
        double = double.double()
        assert torch.allclose(double(x.double()).float(), ref, atol=1e-4)
        with pytest.raises(InputShapeError, match="has float64 weights but got a float32 input"):
            double(x)
        half = create_model("googlenet_small", **SMALL).eval().bfloat16()
        assert half(x.bfloat16()).dtype == torch.bfloat16
        traced = torch.jit.trace(tiny, x, check_trace=False)  # checks skipped while tracing
        assert torch.allclose(traced(x), ref)


# --------------------------------------------------------------------------------------------------
# 8. Every flag and every file argument of eval, predict, export, summary, list, bench


def _files(tmp: Path, png: Path) -> dict[str, str]:
    empty = tmp / "empty.pt"
    empty.write_bytes(b"")
    (tmp / "adir").mkdir(exist_ok=True)
    empty_onnx = tmp / "empty.onnx"
    empty_onnx.write_bytes(b"")
    return {"<EMPTY>": str(empty), "<DIR>": str(tmp / "adir"), "<PNG>": str(png), "<EONNX>": str(empty_onnx),
            "<OUT>": str(tmp)}  # fmt: skip


BAD_FLAGS = [
    # eval
    (["eval", "--checkpoint", "<CKPT>", "--amp", "xx"], "usage", "argument --amp: invalid choice: 'xx'"),
    (["eval", "--checkpoint", "<CKPT>", "--tta", "5crop"], "usage", "argument --tta: invalid choice"),
    (["eval", "--checkpoint", "<CKPT>", "--split", "dev"], "usage", "argument --split: invalid choice"),
    (["eval", "--checkpoint", "<CKPT>", "--batch-size", "many"], "usage", "argument -b/--batch-size: invalid int value"),
    (["eval", "--checkpoint", "<CKPT>", "--val-split", "-1"], "one", "--val-split must not be negative, got -1"),
    (["eval", "--checkpoint", "<CKPT>", "--workers", "-2"], "one", "--workers must not be negative, got -2"),
    (["eval", "--checkpoint", "<CKPT>", "--limit", "-5"], "one", "--limit must not be negative, got -5"),
    (["eval", "--checkpoint", "<CKPT>", "--split", "val", "--val-split", "100000"], "one", "--val-split must be between 0 and"),
    (["eval", "--checkpoint", "<CKPT>", "--dataset", ""], "one", "--dataset is empty"),
    (["eval", "--checkpoint", "<CKPT>", "--dataset", "digitz"], "one", "unknown dataset 'digitz'"),
    (["eval", "--checkpoint", "<CKPT>", "--data", "<PNG>"], "one", "--data <PNG> is a file; give the directory"),
    (["eval", "--checkpoint", "<CKPT>", "--dataset", "fashion_mnist", "--data", "<DIR>"], "one", "Fashion-MNIST"),
    (["eval", "--checkpoint", "<CKPT>", "--weights", "<CKPT>"], "one", "not both"),
    (["eval", "--checkpoint", ""], "one", "--checkpoint is empty"),
    (["eval", "--checkpoint", "<EMPTY>"], "one", "checkpoint <EMPTY> is empty (0 bytes)"),
    (["eval", "--checkpoint", "<DIR>"], "one", "checkpoint <DIR> is a directory"),
    (["eval", "--checkpoint", "<PNG>"], "one", "it is a PNG image, not a PyTorch checkpoint"),
    (["eval", "--model", "googlenet_small", "--weights", ""], "one", "--weights is empty"),
    (["eval", "--model", "", "--weights", "fashion_mnist"], "one", "--model is empty"),
    # predict
    (["predict", "--checkpoint", "<CKPT>", "--topk", "-1", "<PNG>"], "one", "--topk must be at least 1, got -1"),
    (["predict", "--checkpoint", "<CKPT>", "--topk", "x", "<PNG>"], "usage", "argument --topk: invalid int value"),
    (["predict", "--checkpoint", "<CKPT>", ""], "one", "an image path is empty"),
    (["predict", "--checkpoint", "<CKPT>", "<DIR>"], "one", "cannot read image <DIR>: "),
    (["predict", "--checkpoint", "<CKPT>", "<EMPTY>"], "one", "cannot read image <EMPTY>: the file is empty"),
    (["predict", "--checkpoint", "<CKPT>", "<OUT>/missing.png"], "one", "cannot read image <OUT>/missing.png: No such file"),
    (["predict", "--checkpoint", "<CKPT>", "<CKPT>"], "one", "cannot read image <CKPT>: not an image file PIL recognizes"),
    (["predict", "--onnx", "<DIR>", "<PNG>"], "one", "ONNX file <DIR> is a directory"),
    (["predict", "--onnx", "<EONNX>", "<PNG>"], "one", "ONNX file <EONNX> is empty (0 bytes)"),
    (["predict", "--onnx", "<CKPT>", "<PNG>"], "one", "<CKPT> is a PyTorch file, not an ONNX file"),
    (["predict", "--onnx", "<PNG>", "<PNG>"], "one", "cannot load ONNX file <PNG>"),
    (["predict", "--onnx", "", "<PNG>"], "one", "--onnx is empty"),
    (["predict", "--checkpoint", "<PNG>", "<PNG>"], "one", "it is a PNG image, not a PyTorch checkpoint"),
    # export
    (["export", "googlenet_small", "--atol", "-1", "-o", "<OUT>/m.onnx"], "one", "--atol and --rtol must be finite and not negative"),
    (["export", "googlenet_small", "--atol", "nan", "-o", "<OUT>/m.onnx"], "one", "--atol and --rtol must be finite"),
    (["export", "googlenet_small", "--rtol", "inf", "-o", "<OUT>/m.onnx"], "one", "--atol and --rtol must be finite"),
    (["export", "googlenet_small", "--input-size", "0", "8", "-o", "<OUT>/m.onnx"], "one", "--input-size must be between 1 and 4096"),
    (["export", "googlenet_small", "--input-size", "50000", "50000", "-o", "<OUT>/m.onnx"], "one", "--input-size must be between 1 and 4096"),
    (["export", "googlenet_small", "--num-classes", "-1", "-o", "<OUT>/m.onnx"], "one", "--num-classes must not be negative"),
    (["export", "googlenet_small", "--in-chans", "0", "-o", "<OUT>/m.onnx"], "one", "--in-chans must be a positive integer"),
    (["export", "googlenet_small", "--model-kwargs", "width=inf", "-o", "<OUT>/m.onnx"], "one", "bad --model-kwargs for googlenet_small: model googlenet_small: width must be a number, got 'inf'"),
    (["export", "googlenet_small", "--model-kwargs", "width=-1", "-o", "<OUT>/m.onnx"], "one", "bad --model-kwargs for googlenet_small: width must be"),
    (["export", "googlenet_small", "--batch", "", "-o", "<OUT>/m.onnx"], "one", "--batch must be 'dynamic' or a positive integer"),
    (["export", "googlenet_small", "--opset", "99", "-o", "<OUT>/m.onnx"], "one", "--opset must be between"),
    (["export", "googlenet_small", "-o", ""], "one", "--output is empty"),
    (["export", "", "-o", "<OUT>/m.onnx"], "one", "the model NAME is empty"),
    (["export", "--checkpoint", "", "-o", "<OUT>/m.onnx"], "one", "--checkpoint is empty"),
    (["export", "--checkpoint", "<DIR>", "-o", "<OUT>/m.onnx"], "one", "checkpoint <DIR> is a directory"),
    (["export", "--checkpoint", "<EMPTY>", "-o", "<OUT>/m.onnx"], "one", "checkpoint <EMPTY> is empty"),
    (["export", "--checkpoint", "<PNG>", "-o", "<OUT>/m.onnx"], "one", "it is a PNG image, not a PyTorch checkpoint"),
    (["export", "googlenet_small", "--weights", "<OUT>/nope.pt", "-o", "<OUT>/m.onnx"], "one", "weights '<OUT>/nope.pt' is neither a file nor a weight entry"),
    (["export", "--checkpoint", "<CKPT>", "-o", "<DIR>"], "one", "-o/--output <DIR> is a directory"),
    # summary
    (["summary", "googlenet_small", "--in-chans", "-3"], "one", "bad --in-chans: in_chans must be a positive integer, got -3"),
    (["summary", "googlenet_small", "--num-classes", "-2"], "one", "bad --num-classes: num_classes must be a non-negative integer"),
    (["summary", "googlenet_small", "--input-size", "-1", "5"], "one", "input size must be two positive integers"),
    (["summary", "googlenet_small", "--depth", "3"], "usage", "argument --depth: invalid choice"),
    (["summary", "googlenet_small", "--format", "xml"], "usage", "argument --format: invalid choice"),
    (["summary", "googlenet_small", "--table1", "--bottleneck"], "usage", "not allowed with argument"),
    (["summary", "inception_v3", "--bottleneck"], "one", "--bottleneck needs GoogLeNet-style Inception blocks"),
    (["summary", "inception_v3", "--aux", "--table1"], "one", "--aux and --depth apply to the plain summary"),
    (["summary", "bn_inception", "--aux"], "one", "has no auxiliary classifiers"),
    (["summary", ""], "one", "the model NAME is empty"),
    # list
    (["list", "--num-classes", "-1"], "one", "--num-classes must not be negative, got -1"),
    (["list", "resnet*"], "one", "no model matches 'resnet*'"),
    (["list", ""], "one", "the pattern is empty"),
    (["list", "--num-classes", "x"], "usage", "argument --num-classes: invalid int value"),
    # bench (refused before anything is timed)
    (["bench", "--threads", "0"], "one", "--threads must be a positive integer, got 0"),
    (["bench", "--threads", "-1"], "one", "--threads must be a positive integer, got -1"),
    (["bench", "--batch-sizes", "0"], "one", "--batch-sizes must be positive, got 0"),
    (["bench", "--input-size", "0"], "one", "--input-size must be between 1 and 4096, got 0"),
    (["bench", "--input-size", "99999"], "one", "--input-size must be between 1 and 4096"),
    (["bench", "--num-classes", "0"], "one", "--num-classes must be a positive integer, got 0"),
    (["bench", "--models", "resnet50"], "one", "unknown model 'resnet50'"),
    (["bench", "--repeats", "0"], "one", "--repeats must be >= 1"),
    (["bench", "--warmup", "-1"], "one", "--warmup >= 0"),
    (["bench", "--backends", "tensorrt"], "one", "unknown infer backend(s) tensorrt"),
    (["bench", "--mode", "train", "--backends", "eager"], "one", "unknown train backend(s) eager"),
    (["bench", "--mode", "serve"], "usage", "argument --mode: invalid choice"),
]  # fmt: skip


@pytest.mark.parametrize(
    "argv, kind, message", BAD_FLAGS, ids=[" ".join(a[:1] + a[1:][-3:]) for a, _, _ in BAD_FLAGS]
)
def test_every_flag_and_file_argument(argv, kind, message, good, png, tmp_path, capsys, no_timing):
    files = {"<CKPT>": str(good), **_files(tmp_path, png)}

    def fill(s: str) -> str:
        for k, v in files.items():
            s = s.replace(k, v)
        return s

    rc, _, err = run([fill(a) for a in argv], capsys)
    assert rc == 2, err
    if kind == "usage":
        usage_error(err, message)
    else:
        one_error_line(err, fill(message))
    if argv[0] == "export":
        assert not list(Path(files["<OUT>"]).glob("m.onnx"))


def test_model_kwargs_numbers_in_exponent_form_are_numbers():
    from inceptionnet.models import parse_model_kwargs

    # PyYAML reads 5e-1 as a string; it is the width 0.5 the user meant
    assert parse_model_kwargs(["width=5e-1", "stem_stride=1", "act=silu", "drops=[1e-1, 2]"]) == {
        "width": 0.5, "stem_stride": 1, "act": "silu", "drops": [0.1, 2],
    }  # fmt: skip
    assert parse_model_kwargs({"width": "5e-1"}) == {"width": 0.5}
    for bad in ("=1", "width=[1"):
        with pytest.raises(ValueError, match="--model-kwargs"):
            parse_model_kwargs([bad])
