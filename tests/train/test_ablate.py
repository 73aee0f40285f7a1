"""``inceptionnet ablate`` end to end on sklearn's digits: 2 variants x 2 seeds x 1 epoch."""

import csv
from pathlib import Path

import pytest

from inceptionnet.cli import main as cli
from inceptionnet.commands import ablate
from inceptionnet.train import ablation

TINY = ["--dataset", "digits", "--width", "0.125", "--subset", "128", "--epochs", "1", "--seeds", "2",
        "--batch-size", "32", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ablate")
    assert cli(["ablate", "--study", "bn", *TINY, "--output-dir", str(out)]) == 0
    return out


def test_outputs_and_tables(study):
    root = study / "bn"
    for v in ("bn", "none"):
        for s in (0, 1):
            assert (root / v / f"seed{s}" / "results.json").is_file()
            assert (root / v / f"seed{s}" / "metrics.csv").is_file()
    for name in ("results.csv", "summary.md", "curves.png"):
        assert (root / name).is_file(), name
    rows = list(csv.DictReader((root / "results.csv").open()))
    assert len(rows) == 4
    assert sorted((r["variant"], int(r["seed"])) for r in rows) == [
        ("bn", 0),
        ("bn", 1),
        ("none", 0),
        ("none", 1),
    ]
    for r in rows:
        assert int(r["params"]) > 0 and int(r["macs"]) > 0
        assert 0 <= float(r["final_acc1"]) <= 1 and 0 <= float(r["test_acc1"]) <= 1
        assert float(r["best_acc1"]) >= float(r["final_acc1"])
        assert float(r["train_seconds"]) > 0 and float(r["img_per_s"]) > 0
    # BN layers add parameters; the MACs are those of the convs and linears (the same)
    p = {r["variant"]: int(r["params"]) for r in rows}
    assert p["bn"] != p["none"]
    md = (root / "summary.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| bn ") or ln.startswith("| none ")]
    assert len(table) == 2
    for ln in table:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert cells[1] == "2"  # seeds
        mean, std = (float(x) for x in cells[4].split("±"))
        assert 0 <= mean <= 1 and std >= 0
    assert "baseline" in table[0]
    assert "inceptionnet ablate --study bn" in md


def test_rerun_skips_finished_runs(study, monkeypatch, capsys):
    mtimes = {p: p.stat().st_mtime_ns for p in study.glob("bn/*/seed*/results.json")}
    assert len(mtimes) == 4
    calls = []
    monkeypatch.setattr(ablation, "train_run", lambda *a: calls.append(a) or 0)
    assert cli(["ablate", "--study", "bn", *TINY, "--output-dir", str(study)]) == 0
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert "4 runs (4 finished)" in capsys.readouterr().out


def test_other_recipe_in_same_dir_is_an_error(study, capsys):
    argv = ["ablate", "--study", "bn", *TINY, "--output-dir", str(study)]
    argv[argv.index("--epochs") + 1] = "2"
    assert cli(argv) == 2
    assert "another recipe" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [["--study", "dropout"], ["--study", "bn", "--seeds", "0"], ["--study", "act", "--variants", "gelu"]],
)
def test_bad_arguments_exit_2(tmp_path, capsys, bad):
    assert cli(["ablate", *bad, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_studies_share_the_baseline_recipe():
    # every study's baseline is the same network and recipe, so one study's baseline run is reused
    args = ablate.get_args_parser().parse_args(["--study", "all", "--output-dir", "x"])
    base = {
        tuple(ablation._fingerprint(ablation.run_argv(args, s.baseline, 0)))
        for s in ablation.STUDIES.values()
    }
    assert len(ablation.STUDIES) == 5 and len(base) == 1
    variants = [tuple(ablation.run_argv(args, v, 0)) for s in ablation.STUDIES.values() for v in s.variants]
    assert len(set(variants)) == len(variants) - 4  # 5 identical baselines, all else distinct


def test_baseline_is_reused_by_other_studies(study, monkeypatch):
    calls = []
    monkeypatch.setattr(ablation, "train_run", lambda *a: calls.append(a) or 0)
    assert cli(["ablate", "--study", "pool", "--variants", "max", *TINY, "--output-dir", str(study)]) == 0
    assert calls == []
    for s in (0, 1):
        d = study / "pool" / "max" / f"seed{s}"
        assert (d / "results.json").read_bytes() == (
            study / "bn" / "bn" / f"seed{s}" / "results.json"
        ).read_bytes()
        assert "bn/bn/seed" in (d / "reused_from.txt").read_text()
    assert len(list(csv.DictReader((study / "pool" / "results.csv").open()))) == 2


def test_interrupted_run_continues(tmp_path, capsys):
    argv = ["ablate", "--study", "kernel", "--variants", "3x3x2", *TINY, "--output-dir", str(tmp_path)]
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--seeds") + 1] = "1"
    args = ablate.get_args_parser().parse_args(argv[1:])
    d = ablation.run_dir(tmp_path, ablation.STUDIES["kernel"], ablation.STUDIES["kernel"].baseline, 0)
    assert (
        ablation.train_run(
            [*ablation.run_argv(args, ablation.STUDIES["kernel"].baseline, 0), "--stop-after", "1"], d
        )
        == 0
    )
    assert not (d / "results.json").exists() and (d / "checkpoint.pt").exists()
    capsys.readouterr()
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "1 runs (0 finished)" in out and "resumed from" in out and "at epoch 1" in out
    assert [r["epoch"] for r in csv.DictReader((d / "metrics.csv").open())] == ["0", "1"]
