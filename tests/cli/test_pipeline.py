"""The folder pipeline of ``predict`` (issue 34, ``inceptionnet.pipeline``): inputs of every kind,
batched decoding in workers, the same top-1 as the one-image-at-a-time eager path on real
Fashion-MNIST test images with the shipped model, .csv / .jsonl outputs written as they go,
``--resume`` after an interruption, damaged files named / counted / left out, ``--strict``, and
two torchrun nodes on loopback writing what 1 process writes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import two_node_torchrun
from inceptionnet import data as D
from inceptionnet import pipeline as P
from inceptionnet.cli import main as cli

MODEL = ["--model", "googlenet_small", "--weights", "fashion_mnist"]
N = 24  # real Fashion-MNIST test images


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """N real test images as PNGs in a folder with a sub-folder (sorted: a/..., then b/...)."""
    x, _, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    root = tmp_path_factory.mktemp("fmnist")
    paths = []
    for i in range(N):
        p = root / ("a" if i < N // 2 else "b") / f"im{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(x[i].reshape(28, 28).numpy()).save(p)
        paths.append(p)
    return root, paths


def _predict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli(["predict", *MODEL, "--backend", "none", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_top1_equals_one_image_at_a_time(images, tmp_path, capsys) -> None:
    from inceptionnet.checkpoint import ModelSource, open_model
    from inceptionnet.commands._args import preprocess

    root, paths = images
    out = tmp_path / "p.jsonl"
    rc, _, err = _predict(
        [str(root), "-o", str(out), "--batch-size", "5", "--workers", "2", "--topk", "3"], capsys
    )
    assert rc == 0, err
    rows = _jsonl(out)
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # input order, across workers
    model, icfg, _, _ = open_model(ModelSource.model("googlenet_small", weights="fashion_mnist"))
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    with torch.inference_mode():
        eager = [model(preprocess(str(p), icfg, transform).unsqueeze(0)).softmax(1)[0] for p in paths]
    assert [r["top"][0]["index"] for r in rows] == [int(e.argmax()) for e in eager]
    for r, e in zip(rows, eager, strict=True):
        assert abs(r["top"][0]["prob"] - float(e.max())) < 1e-5
    assert "predict: 24 images in " in err and "0 unreadable" in err


def test_csv_and_jsonl_parse_and_agree_with_the_terminal(images, tmp_path, capsys) -> None:
    root, paths = images
    rc, out, _ = _predict([str(root), "--json", "--topk", "2"], capsys)
    assert rc == 0
    terminal = json.loads(out)
    rc, _, _ = _predict(
        [str(root), "-o", str(tmp_path / "p.csv"), "--topk", "2", "--batch-size", "7"], capsys
    )
    assert rc == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert list(table[0]) == ["path", "label_1", "index_1", "prob_1", "label_2", "index_2", "prob_2"]
    rc, _, _ = _predict([str(root), "-o", str(tmp_path / "p.jsonl"), "--topk", "2"], capsys)
    assert rc == 0
    lines = _jsonl(tmp_path / "p.jsonl")
    assert lines == terminal and len(table) == N
    for row, t in zip(table, terminal, strict=True):
        assert row["path"] == t["path"] and row["label_1"] == t["top"][0]["label"]
        assert (
            int(row["index_2"]) == t["top"][1]["index"]
            and abs(float(row["prob_1"]) - t["top"][0]["prob"]) < 1e-5
        )
    assert not (tmp_path / "p.csv.partial").exists()


def test_resume_after_interruption_gives_the_same_file(images, tmp_path, capsys, monkeypatch) -> None:
    root, _ = images
    ref = tmp_path / "ref.csv"
    argv = [str(root), "--batch-size", "4", "--workers", "0"]
    assert _predict([*argv, "-o", str(ref)], capsys)[0] == 0
    out = tmp_path / "p.csv"
    write, calls = P.OutputFile.write, []

    def interrupted(self, results):  # Ctrl-C after the third batch was written
        write(self, results)
        calls.append(len(results))
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(P.OutputFile, "write", interrupted)
    rc, _, err = _predict([*argv, "-o", str(out)], capsys)
    assert rc == 130 and "--resume" in err and not out.exists()
    partial = P.partial_path(out)
    assert len(partial.read_text().splitlines()) == 1 + 12
    with open(partial, "ab") as f:  # kill -9 in the middle of the next line
        f.write(b"/x/im999.png,Sh")
    monkeypatch.setattr(P.OutputFile, "write", write)
    read = []
    getitem = P.ImageFiles.__getitem__
    monkeypatch.setattr(P.ImageFiles, "__getitem__", lambda self, i: read.append(i) or getitem(self, i))
    rc, _, err = _predict([*argv, "-o", str(out), "--resume"], capsys)
    assert rc == 0, err
    assert len(read) == N - 12  # nothing recomputed
    assert out.read_bytes() == ref.read_bytes() and not partial.exists()
    assert "12 already done (--resume)" in err
    # a finished file resumed: nothing to do, nothing changed
    rc, _, err = _predict([*argv, "-o", str(out), "--resume"], capsys)
    assert rc == 0 and out.read_bytes() == ref.read_bytes() and f"{N} already done" in err


def test_parquet_without_pyarrow_says_how_to_install_it(images, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    rc, _, err = _predict([str(images[0]), "-o", str(tmp_path / "p.parquet")], capsys)
    assert rc == 2 and "error: -o" in err and "pip install pyarrow" in err
    assert not list(tmp_path.iterdir())


def test_parquet_output_and_resume(images, tmp_path, capsys, monkeypatch) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    root, _ = images
    argv = [str(root), "--batch-size", "4", "--workers", "0", "--topk", "2"]
    ref = tmp_path / "ref.jsonl"
    assert _predict([*argv, "-o", str(ref)], capsys)[0] == 0
    want = [{"path": r["path"], **{f"{k}_{j}": t[k] for j, t in enumerate(r["top"], 1) for k in t}}
            for r in _jsonl(ref)]  # fmt: skip
    out = tmp_path / "p.parquet"
    write, calls = P.OutputFile.write, []

    def interrupted(self, results):  # Ctrl-C after the second batch was written
        write(self, results)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(P.OutputFile, "write", interrupted)
    assert _predict([*argv, "-o", str(out)], capsys)[0] == 130 and not out.exists()
    monkeypatch.setattr(P.OutputFile, "write", write)
    rc, _, err = _predict([*argv, "-o", str(out), "--resume"], capsys)
    assert rc == 0 and "8 already done (--resume)" in err and not P.partial_path(out).exists()
    table = pq.read_table(out)
    assert table.column_names == ["path", "label_1", "index_1", "prob_1", "label_2", "index_2", "prob_2"]
    assert table.to_pylist() == want
    # a finished file resumed with more inputs: its rows read back, the new ones added
    extra = tmp_path / "extra.png"
    shutil.copy(Path(want[0]["path"]), extra)
    rc, _, err = _predict([str(root), str(extra), *argv[1:], "-o", str(out), "--resume"], capsys)
    assert rc == 0 and f"{N} already done" in err
    rows = pq.read_table(out).to_pylist()
    assert rows[:N] == want and rows[N]["path"] == str(extra) and rows[N]["index_1"] == want[0]["index_1"]
    assert rows[N]["prob_1"] == pytest.approx(want[0]["prob_1"], abs=1e-5)  # a batch of 1, not of 4


def test_resume_refuses_another_format(images, tmp_path, capsys) -> None:
    root, _ = images
    out = tmp_path / "p.csv"
    P.partial_path(out).write_text("path,label_1,index_1,prob_1\n")
    rc, _, err = _predict([str(root), "-o", str(out), "--resume"], capsys)  # --topk 5
    assert rc == 2 and "was not written by predict -o in this format with this --topk" in err


def test_damaged_files_are_named_counted_and_left_out(images, tmp_path, capsys) -> None:
    root, paths = images
    folder = tmp_path / "mixed"
    shutil.copytree(root, folder)
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(40))
    (folder / "b" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "p.jsonl"
    rc, _, err = _predict([str(folder), str(tmp_path / "gone.png"), "-o", str(out)], capsys)
    assert rc == 0
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 3 and all(ln.startswith("error: cannot read image ") for ln in errors)
    assert any("empty.jpg: the file is empty" in ln for ln in errors)
    assert "3 unreadable (named above, left out)" in err
    assert len(_jsonl(out)) == N
    rc, _, err = _predict([str(folder), "-o", str(out), "--strict"], capsys)
    assert rc == 2 and "2 unreadable" in err and len(_jsonl(out)) == N


def test_folder_glob_list_and_stdin_inputs(images, tmp_path, capsys, monkeypatch) -> None:
    root, paths = images
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in paths) + "\n")
    outputs = []
    for i, inputs in enumerate(
        [
            [str(root)],
            [str(root / "a" / "*.png"), str(root / "b")],
            [f"@{listing}"],
            ["-"],
            [str(root / "**" / "*.png")],
        ]
    ):
        monkeypatch.setattr(sys, "stdin", io.StringIO(listing.read_text()))
        out = tmp_path / f"p{i}.jsonl"
        assert _predict([*inputs, "-o", str(out), "--topk", "1"], capsys)[0] == 0
        outputs.append(_jsonl(out))
    assert all(o == outputs[0] for o in outputs) and len(outputs[0]) == N
    assert [r["path"] for r in outputs[0]] == [str(p) for p in paths]
    rc, _, err = _predict([f"@{tmp_path / 'nope.txt'}"], capsys)
    assert rc == 2 and "the list file" in err and "does not exist" in err


def test_input_set_changing_during_the_run_is_noticed(images, tmp_path, capsys, monkeypatch) -> None:
    root, paths = images
    folder = tmp_path / "live"
    shutil.copytree(root, folder)
    write, calls = P.OutputFile.write, []

    def change(self, results):  # after the first batch: one file removed, one added
        write(self, results)
        calls.append(1)
        if len(calls) == 1:
            (folder / "b" / paths[-1].name).unlink()
            shutil.copy(paths[0], folder / "b" / "new.png")

    monkeypatch.setattr(P.OutputFile, "write", change)
    out = tmp_path / "p.csv"
    rc, _, err = _predict([str(folder), "-o", str(out), "--batch-size", "4", "--workers", "0"], capsys)
    assert rc == 0
    assert f"error: cannot read image {folder / 'b' / paths[-1].name}: " in err and "1 unreadable" in err
    assert "1 image files appeared in the input folders during the run" in err and "new.png" in err


def test_bulk_work_takes_the_fast_path_calibrated_on_its_inputs(
    images, tmp_path, capsys, monkeypatch
) -> None:
    """More than pipeline.BULK inputs: --backend auto --dtype auto by default, calibrated on
    BULK_CALIBRATION of the inputs themselves, spread over them (accelerate is recorded, not run:
    building is slow); --dtype fp32 needs no calibration."""
    import inceptionnet.checkpoint as C
    from inceptionnet.commands.predict import BULK_CALIBRATION, _spread

    root, paths = images
    seen = {}

    def record(p, backend, dtype="fp32", calibration=None, **kw):
        seen.update(backend=backend, dtype=dtype, calibration=calibration)
        return p

    monkeypatch.setattr(C, "accelerate", record)
    many = [str(p) for p in paths] * 3  # 72 inputs
    assert cli(["predict", *MODEL, *many, "-o", str(tmp_path / "p.csv")]) == 0
    assert seen["backend"] == "auto" and seen["dtype"] == "auto"
    calib = seen["calibration"]
    assert isinstance(calib, torch.Tensor) and calib.shape == (BULK_CALIBRATION, 1, 28, 28)
    # spread over the inputs (a folder sorted by class gives every class its share), spares after
    names = [f"{c}/{i}.png" for c in "abcd" for i in range(50)]
    spread = _spread(names, 8)
    assert spread[:8] == [names[i] for i in range(0, 200, 25)] and len(spread) == 10
    assert {n.split("/")[0] for n in spread[:8]} == set("abcd") and len(set(spread)) == 10
    assert cli(["predict", *MODEL, *many, "--dtype", "int8", "-o", str(tmp_path / "q.csv")]) == 0
    assert seen["dtype"] == "int8" and seen["calibration"].shape == (BULK_CALIBRATION, 1, 28, 28)
    assert cli(["predict", *MODEL, *many, "--dtype", "fp32", "-o", str(tmp_path / "s.csv")]) == 0
    assert seen["dtype"] == "fp32" and seen["calibration"] is None
    seen.clear()
    assert cli(["predict", *MODEL, "--backend", "none", *many, "-o", str(tmp_path / "r.csv")]) == 0
    assert seen == {}
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 3 * N  # a path given twice is done twice


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["-o", "p.txt"], "the suffix says the format: .csv, .jsonl or .parquet"),
        (["--resume"], "--resume applies to an -o file"),
        (["-o", "p.csv", "--json"], "--json prints to the terminal"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--workers", "-1"], "--workers must not be negative"),
    ],
)
def test_usage_errors(images, tmp_path, capsys, monkeypatch, argv, msg) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = _predict([str(images[0]), *argv], capsys)
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_torchrun_two_nodes_write_what_one_process_writes(images, tmp_path, capsys) -> None:
    """Two torchrun nodes on loopback, one process each (so also two processes): global rank 0
    writes the merged output, in input order, byte for byte what one process writes."""
    root, _ = images
    argv = [str(root), "--batch-size", "5", "--workers", "0"]
    assert _predict([*argv, "-o", str(tmp_path / "one.csv")], capsys)[0] == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INCEPTIONNET_NO_PROGRESS": "1"}
    out = tmp_path / "two.csv"
    two_node_torchrun("inceptionnet.predict", [*MODEL, "--backend", "none", *argv, "-o", str(out)], env=env)
    assert out.read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert len(out.read_text().splitlines()) == 1 + N


def test_embed_decodes_in_workers_in_input_order(images, tmp_path, capsys) -> None:
    from safetensors import safe_open

    root, paths = images
    folder = tmp_path / "mixed"
    shutil.copytree(root, folder)
    (folder / "a" / "im005x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(40))
    got = []
    for workers in ("0", "2"):
        out = tmp_path / f"e{workers}.safetensors"
        argv = ["embed", *MODEL[1:2], *MODEL[2:], str(folder), "-o", str(out), "--batch-size", "5"]
        assert cli([*argv, "--workers", workers]) == 2  # one unreadable file: named, left out
        assert capsys.readouterr().err.count("error: cannot read image") == 1
        with safe_open(str(out), framework="pt") as f:
            got.append((json.loads(f.metadata()["files"]), f.get_tensor("embeddings")))
    assert got[0][0] == got[1][0] == [str(folder / p.relative_to(root)) for p in paths]
    torch.testing.assert_close(got[0][1], got[1][1])
