"""The one output rule (issue 35, item 2): every command that writes (export in every format with the
files written beside the one given, embed -o, fid --save-stats, explain -o, bench --output-dir) writes
regular files only, replaces an existing file only when this project wrote it (recognised by its
metadata, never by its name) or with --overwrite (never a checkpoint or weights), refuses before any
work with one line naming the flag and the path, and changes nothing on disk when it refuses;
``atomic_write`` itself never renames over a node that is no regular file.

A FIFO (``os.mkfifo``) stands in for a device wherever something could be written; /dev/null is only
passed where the refusal comes before any work (the model builders fail the test if reached), and
every test checks afterwards that it is still a character device (the suite may run as root).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import one_error_line
from inceptionnet import bench
from inceptionnet.cli import main as cli
from inceptionnet.errors import OutputWriteError, UsageError
from inceptionnet.fileio import atomic_save_figure, atomic_write, atomic_write_text, file_kind

EXPORT = ["export", "googlenet_small", "--num-classes", "10", "--in-chans", "1", "--input-size", "16", "16"]


class Reached(BaseException):
    """Raised where the expensive work would start: the output check let the command through."""


def reached(*_a: object, **_k: object) -> None:
    raise Reached


def refused_early(*_a: object, **_k: object) -> None:
    pytest.fail("the command started its work before refusing the output")


@pytest.fixture(autouse=True)
def dev_null_intact() -> Iterator[None]:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    yield
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "/dev/null was replaced"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``inceptionnet ARGV`` in-process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        rc = cli(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    return rc, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry of ``folder``: its file type and, for regular files, its bytes (nothing is opened
    that is no regular file: opening a FIFO would block)."""
    out = {}
    for p in sorted(folder.iterdir()):
        mode = os.lstat(p).st_mode
        out[p.name] = (stat.S_IFMT(mode), p.read_bytes() if stat.S_ISREG(mode) else None)
    return out


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    import inceptionnet.commands.export as X

    monkeypatch.setattr(X, "open_model", refused_early)


@pytest.fixture
def export_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    import inceptionnet.commands.export as X

    monkeypatch.setattr(X, "open_model", reached)


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L").save(p)
    return p


# --------------------------------------------------------------------------------------------------
# Regular files only


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".xml"])
def test_export_refuses_a_fifo_before_any_work(suffix, tmp_path, capsys, no_export):
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    rc, err = run([*EXPORT, "-o", str(fifo)], capsys)
    assert rc == 2
    one_error_line(err, "-o/--output", str(fifo), "is a FIFO (named pipe), not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and [p.name for p in tmp_path.iterdir()] == [fifo.name]


def test_export_refuses_a_fifo_in_place_of_the_ir_bin(tmp_path, capsys, no_export):
    os.mkfifo(tmp_path / "model.bin")
    before = snapshot(tmp_path)
    rc, err = run([*EXPORT, "-o", str(tmp_path / "model.xml")], capsys)
    assert rc == 2
    one_error_line(err, "-o/--output (the .bin written beside it)", "model.bin", "is a FIFO")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_refuses_dev_null(fmt, capsys, no_export):
    rc, err = run([*EXPORT, "--format", fmt, "-o", "/dev/null"], capsys)
    assert rc == 2
    one_error_line(err, "-o/--output /dev/null is a character device, not a regular file")


def test_a_symlink_to_a_device_is_refused(tmp_path, capsys, no_export):
    link = tmp_path / "m.onnx"
    link.symlink_to("/dev/null")
    rc, err = run([*EXPORT, "-o", str(link)], capsys)
    assert rc == 2
    one_error_line(err, str(link), "is a character device")
    assert link.is_symlink()


def test_embed_fid_explain_refuse_non_regular_outputs(tmp_path, png, capsys, monkeypatch):
    import inceptionnet.checkpoint as C
    import inceptionnet.commands.fid as F

    monkeypatch.setattr(C, "open_model", refused_early)
    monkeypatch.setattr(F, "fid_network", refused_early)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png.read_bytes())
    cases = [
        (["embed", "googlenet_small", "--weights", "x", str(png)], "-o"),
        (["fid", str(folder), "--device", "cpu"], "--save-stats"),
        (["explain", "--model", "googlenet_small", str(png)], "-o"),
    ]
    for argv, flag in cases:
        (tmp_path / "pipedir").mkdir(exist_ok=True)  # a directory: refused too
        for out in (fifo, Path("/dev/null"), tmp_path / "pipedir"):
            rc, err = run([*argv, flag, str(out)], capsys)
            assert rc == 2, (argv, out, err)
            line = one_error_line(err, flag, str(out))
            assert "not a regular file" in line or "is a directory" in line, line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "pipe", "pipedir"]


def test_bench_refuses_a_fifo_among_its_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "gemm_peak_gflops", refused_early)
    monkeypatch.setattr(bench, "open_bench_models", refused_early)
    os.mkfifo(tmp_path / "bench.png")
    before = snapshot(tmp_path)
    argv = ["bench", "--models", "googlenet_small", "--batch-sizes", "1", "--input-size", "8"]
    rc, err = run([*argv, "--output-dir", str(tmp_path), "--overwrite"], capsys)
    assert rc == 2
    one_error_line(err, "--output-dir", "bench.png is a FIFO (named pipe), not a regular file")
    assert snapshot(tmp_path) == before


def test_atomic_write_never_renames_over_a_node_that_is_no_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(
        OutputWriteError, match="is a FIFO .named pipe., not a regular file; nothing was written"
    ):
        atomic_write(fifo, refused_early)  # refused before the writer runs
    late = tmp_path / "late.txt"

    def write(tmp: str) -> None:  # a FIFO appears at the destination while the file is written
        Path(tmp).write_text("x")
        os.mkfifo(late)

    with pytest.raises(OutputWriteError, match="late.txt: it is a FIFO"):
        atomic_write(late, write)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISFIFO(os.lstat(late).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.txt", "pipe"]  # no temp file left


def test_export_model_api_refuses_before_running_the_model(tmp_path):
    from inceptionnet.deploy.export import export_model

    os.mkfifo(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="m.onnx: it is a FIFO"):
        export_model(
            torch.nn.Module(), tmp_path / "m.onnx", input_size=(8, 8), in_chans=1
        )  # forward would fail


# --------------------------------------------------------------------------------------------------
# Replace only what this project wrote, or with --overwrite


@pytest.mark.parametrize(
    "names, out",
    [
        (["notes.onnx"], "notes.onnx"),
        (["app.ts"], "app.ts"),
        (["settings.xml", "settings.bin"], "settings.xml"),
        (["settings.bin"], "settings.xml"),  # the unnamed .bin beside the .xml, alone
    ],
)
def test_export_keeps_files_it_did_not_write(names, out, tmp_path, capsys, no_export):
    for n in names:
        (tmp_path / n).write_text("<config/>\n" if n.endswith(".xml") else "keep me\n")
    before = snapshot(tmp_path)
    rc, err = run([*EXPORT, "-o", str(tmp_path / out)], capsys)
    assert rc == 2
    first = "settings.bin" if names == ["settings.bin"] else out
    one_error_line(err, str(tmp_path / first), "is a text file, not an exported model", "pass --overwrite")
    assert snapshot(tmp_path) == before
    assert file_kind(tmp_path / names[0]) == "text"


def _our_onnx(path: Path, ours: bool = True) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"inceptionnet_version": "0.1.0"} if ours else {"producer": "someone"})
    onnx.save(model, str(path))
    return path


def test_export_replaces_its_own_files_and_others_only_with_overwrite(tmp_path, capsys, export_reached):
    from inceptionnet.deploy.export import TORCHSCRIPT_META

    ours_onnx, theirs_onnx = (
        _our_onnx(tmp_path / "ours.onnx"),
        _our_onnx(tmp_path / "theirs.onnx", ours=False),
    )
    scripted = torch.jit.script(torch.nn.Identity())
    torch.jit.save(scripted, str(tmp_path / "ours.pt"), _extra_files={TORCHSCRIPT_META: "{}"})
    torch.jit.save(scripted, str(tmp_path / "theirs.pt"))
    (tmp_path / "notes.onnx").write_text("keep me\n")
    before = snapshot(tmp_path)
    for name in ("ours.onnx", "ours.pt"):  # an earlier export: replaced without asking
        with pytest.raises(Reached):
            cli([*EXPORT, "-o", str(tmp_path / name)])
    for name, kind in (
        ("theirs.onnx", "an ONNX file"),
        ("theirs.pt", "a TorchScript file"),
        ("notes.onnx", "a text"),
    ):
        rc, err = run([*EXPORT, "-o", str(tmp_path / name)], capsys)
        assert rc == 2
        one_error_line(err, name, kind, "not an exported model", "pass --overwrite")
        with pytest.raises(Reached):
            cli([*EXPORT, "-o", str(tmp_path / name), "--overwrite"])
    assert snapshot(tmp_path) == before
    assert ours_onnx.exists() and theirs_onnx.exists()


def test_export_recognises_its_own_openvino_ir_pair(tmp_path, capsys, export_reached):
    pytest.importorskip("openvino")
    from inceptionnet.deploy import openvino as OV

    _our_onnx(tmp_path / "g.onnx")
    model = OV.read_onnx(tmp_path / "g.onnx")
    OV.save_ir(model, tmp_path / "ours.xml", {"model_name": "x", "inceptionnet_version": "0.1.0"})
    model = OV.read_onnx(tmp_path / "g.onnx")
    OV.save_ir(model, tmp_path / "theirs.xml", {"model_name": "x"})
    before = snapshot(tmp_path)
    with pytest.raises(Reached):
        cli([*EXPORT, "-o", str(tmp_path / "ours.xml")])
    rc, err = run([*EXPORT, "-o", str(tmp_path / "theirs.xml")], capsys)
    assert rc == 2
    one_error_line(err, "theirs.xml exists and is a text file, not an exported model")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("victim", ["checkpoint", "safetensors"])
def test_overwrite_never_replaces_weights(victim, tmp_path, capsys, no_export):
    path = tmp_path / "w.onnx"
    if victim == "checkpoint":
        torch.save({"model": {"w": torch.zeros(2)}}, path)
    else:
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(path))
    before = snapshot(tmp_path)
    rc, err = run([*EXPORT, "-o", str(path), "--overwrite"], capsys)
    assert rc == 2
    one_error_line(err, str(path), "refusing to replace it (not even with --overwrite)")
    assert snapshot(tmp_path) == before


def test_embed_replaces_a_foreign_file_only_with_overwrite(tmp_path, png, capsys, monkeypatch):
    import inceptionnet.checkpoint as C

    monkeypatch.setattr(C, "open_model", reached)
    out = tmp_path / "e.safetensors"
    out.write_text("keep me\n")
    argv = ["embed", "googlenet_small", "--weights", "x", str(png), "-o", str(out)]
    rc, err = run(argv, capsys)
    assert rc == 2
    one_error_line(err, "-o", str(out), "is a text file, not an embeddings file", "pass --overwrite")
    with pytest.raises(Reached):
        cli([*argv, "--overwrite"])
    assert out.read_text() == "keep me\n"


def test_fid_save_stats_keeps_its_npz_and_replaces_text_with_overwrite(tmp_path, png, capsys, monkeypatch):
    import inceptionnet.commands.fid as F

    monkeypatch.setattr(F, "fid_network", reached)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png.read_bytes())
    ours, other, text = tmp_path / "s.npz", tmp_path / "o.npz", tmp_path / "t.npz"
    np.savez(ours, mu=np.zeros(2), sigma=np.eye(2))
    np.savez(other, images=np.zeros(2))  # a data set's arrays, not statistics
    text.write_text("keep me\n")
    before = snapshot(tmp_path)
    base = ["fid", str(folder), "--device", "cpu", "--save-stats"]
    rc, err = run([*base, str(ours)], capsys)
    assert rc == 2
    one_error_line(err, f"--save-stats {ours} exists; pass --overwrite")
    for path, kind in ((other, "a NumPy .npz archive"), (text, "a text file")):
        rc, err = run([*base, str(path)], capsys)
        assert rc == 2
        one_error_line(err, str(path), kind, "not an .npz statistics file")
    for path in (ours, other, text):
        with pytest.raises(Reached):
            cli([*base, str(path), "--overwrite"])
    assert snapshot(tmp_path) == before


def test_bench_replaces_its_own_report_and_keeps_other_files(tmp_path, capsys, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(bench, "gemm_peak_gflops", reached)
    monkeypatch.setattr(bench, "open_bench_models", reached)
    argv = ["bench", "--models", "googlenet_small", "--batch-sizes", "1", "--input-size", "8",
            "--output-dir", str(tmp_path)]  # fmt: skip
    report = {"mode": "infer", "env": {}, "results": []}
    atomic_write_text(tmp_path / "bench.json", json.dumps(report))
    atomic_write_text(tmp_path / "bench.md", bench.format_markdown(report))
    fig = plt.figure()
    atomic_save_figure(fig, tmp_path / "bench.png")
    plt.close(fig)
    with pytest.raises(Reached):  # a rerun into the same folder
        cli(argv)
    (tmp_path / "bench.md").write_text("# my notes\n")
    before = snapshot(tmp_path)
    rc, err = run(argv, capsys)
    assert rc == 2
    one_error_line(err, "--output-dir", "bench.md exists and is a text file, not a bench.md that bench wrote")
    assert snapshot(tmp_path) == before
    with pytest.raises(Reached):
        cli([*argv, "--overwrite"])


def test_explain_keeps_a_file_of_another_kind(tmp_path, png, capsys, monkeypatch):
    import inceptionnet.checkpoint as C

    monkeypatch.setattr(C, "open_model", reached)
    ckpt = tmp_path / "out.png"
    torch.save({"model": {"w": torch.zeros(2)}}, ckpt)
    before = snapshot(tmp_path)
    argv = ["explain", "--model", "googlenet_small", str(png), "-o", str(ckpt), "--overwrite"]
    rc, err = run(argv, capsys)
    assert rc == 2
    one_error_line(err, "-o/--output", "is a PyTorch checkpoint, not a figure", "not even with --overwrite")
    assert snapshot(tmp_path) == before
