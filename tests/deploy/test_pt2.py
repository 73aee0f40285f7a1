"""PyTorch 2 export (issue 31): torch.export programs and AOTInductor packages (``.pt2``), reloaded
without our package, refused with one line when damaged or foreign, run by predict; ``--uint8-input``
checked on real Fashion-MNIST images against our Python preprocessing.

torch.export and AOTInductor cost time in proportion to the graph's nodes (tens of seconds per
registry model on a loaded 2-core machine, minutes for an AOTInductor compile of googlenet_small): each
registry model goes through torch.export once (``test_pt2_over_registry_reloads_without_inceptionnet``),
the trained googlenet_small once per ``--uint8-input`` format (the pt2 file shared with the predict
test), and the machinery (refusals, the output rule, kind detection, the AOTInductor package) runs on
``micro_model``: the same ``export_model`` / ``write_program`` / ``open_program`` code for any module."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import inceptionnet
from helpers import SMALL_MODELS, micro_model, one_error_line
from inceptionnet import cli
from inceptionnet import data as D
from inceptionnet.checkpoint import ModelSource, open_for_inference, open_model
from inceptionnet.deploy import export as E
from inceptionnet.deploy import pt2, verify

ATOL = 1e-4  # the fp32 bound, as tests/deploy/test_export.py applies it
N_IMAGES = 64  # real Fashion-MNIST test images for the uint8 check


def _export(model: torch.nn.Module, name: str, out: Path, fmt: str = "pt2", **kw: object) -> E.ExportResult:
    icfg = D.InputConfig(32, 1, (0.5,), (0.25,))
    meta = E.build_metadata(name, icfg, (32, 32), 10, [f"c{i}" for i in range(10)])
    return E.export_model(model, out, fmt=fmt, input_size=(32, 32), in_chans=1, metadata=meta, **kw)  # type: ignore[arg-type]


def _random_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return inceptionnet.create_model(name, num_classes=10, in_chans=1).eval()


# Reloaded in a fresh interpreter (-I: no PYTHONPATH, no user site) with nothing of ours imported: the
# README's lines, then the logits and the metadata written back for the test to compare.
FRESH = """
import json, sys, torch
kind, path, x_path, out_path = sys.argv[1:]
if kind == "aoti":
    run = torch._inductor.aoti_load_package(path)
    import zipfile
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/extra/inceptionnet.json"))))
else:
    extra = {"inceptionnet.json": ""}
    run = torch.export.load(path, extra_files=extra).module()
    meta = json.loads(extra["inceptionnet.json"])
with torch.no_grad():
    y = run(torch.load(x_path))
assert not any(m == "inceptionnet" or m.startswith("inceptionnet.") for m in sys.modules)
torch.save({"y": y, "meta": meta}, out_path)
"""


def _run_fresh(kind: str, path: Path, x: torch.Tensor, tmp: Path) -> tuple[torch.Tensor, dict]:
    torch.save(x, tmp / "x.pt")
    subprocess.run(
        [sys.executable, "-I", "-c", FRESH, kind, str(path), str(tmp / "x.pt"), str(tmp / "y.pt")],
        check=True, cwd=tmp, timeout=600,
    )  # fmt: skip
    got = torch.load(tmp / "y.pt")
    return got["y"], got["meta"]


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_pt2_over_registry_reloads_without_inceptionnet(name: str, tmp_path: Path) -> None:
    model = _random_model(name)
    out = tmp_path / f"{name}.pt2"
    r = _export(model, name, out)
    assert r.format == "pt2" and r.max_abs_diff <= r.tolerance
    x = torch.randn(5, 1, 32, 32)  # neither the traced batch (2) nor the verified one (3)
    y, meta = _run_fresh("pt2", out, x, tmp_path)
    with torch.no_grad():
        verify.check_close(y, model(x), "fresh torch.export.load", atol=ATOL, rtol=0)
    assert meta["model_name"] == name and meta["input_size"] == [1, 32, 32] and meta["mean"] == [0.5]
    assert meta["classes"][3] == "c3" and meta["inceptionnet_version"] == inceptionnet.__version__
    assert E.written_by_export(out, "pt2") and pt2.pt2_kind(out) == "pt2"


@pytest.fixture(scope="module")
def small_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``micro_model`` as a torch.export program (the registry's programs: the parametrized test above)."""
    out = tmp_path_factory.mktemp("pt2") / "micro.pt2"
    r = _export(micro_model(), "micro", out)
    assert r.format == "pt2" and r.max_abs_diff <= r.tolerance
    return out


def test_damaged_truncated_and_foreign_pt2_refused_with_one_line(
    small_pt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_pt2.read_bytes()
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = tmp_path / "damaged.pt2"
    with zipfile.ZipFile(small_pt2) as src, zipfile.ZipFile(damaged, "w") as dst:
        for i in src.infolist():  # the program's graph replaced by junk, the metadata kept
            dst.writestr(i, b"{not json" if i.filename.endswith("/models/model.json") else src.read(i))
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("notes/readme.txt", "hello")
    no_meta = tmp_path / "plain.pt2"  # a torch.export program someone else saved: preprocessing unknown
    torch.export.save(torch.export.export(torch.nn.Flatten(), (torch.zeros(1, 1, 2, 2),)), str(no_meta))
    text = tmp_path / "text.pt2"
    text.write_text("just text\n")
    img = tmp_path / "i.png"
    from PIL import Image

    Image.new("L", (32, 32), 128).save(img)
    for bad, needle in ((truncated, "not a torch.export program"), (damaged, "cannot load torch.export"),
                        (foreign, "not a torch.export program"), (no_meta, "no inceptionnet metadata"),
                        (text, "not a torch.export program")):  # fmt: skip
        assert cli.main(["predict", "--onnx", str(bad), str(img)]) == 2, bad
        line = one_error_line(capsys.readouterr().err, needle)
        assert str(bad) in line
        assert E.written_by_export(bad, "pt2") == (bad == damaged)  # ours by its metadata: replaceable


def test_export_output_rule_knows_our_pt2(
    small_pt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "theirs.pt2"
    torch.export.save(torch.export.export(torch.nn.Flatten(), (torch.zeros(1, 1, 2, 2),)), str(foreign))
    before = foreign.read_bytes()
    argv = ["export", "googlenet_small", "--in-chans", "1", "--input-size", "32", "32"]
    assert cli.main([*argv, "-o", str(foreign)]) == 2  # not ours: replaced only with --overwrite
    one_error_line(capsys.readouterr().err, str(foreign))
    assert foreign.read_bytes() == before
    assert E.written_by_export(small_pt2, "pt2") and E.written_by_export(small_pt2, "aoti")
    ckpt = tmp_path / "w.safetensors"  # export over its own input
    from safetensors.torch import save_file

    save_file(_random_model("googlenet_small").state_dict(), str(ckpt))
    assert (
        cli.main(["export", "googlenet_small", "--weights", str(ckpt), "--format", "pt2", "-o", str(ckpt)])
        == 2
    )
    one_error_line(capsys.readouterr().err, "-o/--output")
    assert cli.main([*argv, "--format", "aoti", "-o", str(tmp_path / "x.pt")]) == 2
    one_error_line(capsys.readouterr().err, "ends in .pt2")


@pytest.fixture(scope="module")
def fmnist() -> tuple[torch.Tensor, torch.nn.Module]:
    """Real Fashion-MNIST test images (uint8, N x 28 x 28) and the trained googlenet_small."""
    x, _, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    return x[:N_IMAGES], inceptionnet.create_model("googlenet_small", weights="fashion_mnist").eval()


@pytest.fixture(scope="module")
def u8_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``export googlenet_small --weights fashion_mnist --uint8-input -o u8.<fmt>``, once per format."""
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            out = tmp_path_factory.mktemp("u8") / f"u8.{fmt}"
            argv = ["export", "googlenet_small", "--weights", "fashion_mnist", "--uint8-input"]
            assert cli.main([*argv, "-o", str(out)]) == 0
            made[fmt] = out
        return made[fmt]

    return get


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_uint8_input_matches_python_preprocessing(
    fmt: str, fmnist: tuple[torch.Tensor, torch.nn.Module], u8_export: Callable[[str], Path]
) -> None:
    images, model = fmnist
    out = u8_export(fmt)
    _, icfg, _, _ = open_model(ModelSource.model("googlenet_small", "fashion_mnist"))
    tf = D.eval_transform(icfg, 1, 28)
    prepared = torch.stack([tf(im[None]) for im in images])  # our Python preprocessing
    with torch.no_grad():
        want = model(prepared).argmax(1)
    u8 = images[..., None].contiguous()  # N x H x W x C as a decoder gives them
    if fmt == "pt2":
        extra = {pt2.META_NAME: ""}
        got = torch.export.load(str(out), extra_files=extra).module()(u8)
        assert json.loads(extra[pt2.META_NAME])["input_dtype"] == "uint8"
    else:
        got = torch.from_numpy(E.ort_session(out).run(None, {E.INPUT_NAME: u8.numpy()})[0])
    assert torch.equal(got.argmax(1), want)
    assert torch.equal(pt2.to_uint8_images(prepared, E.read_metadata(out)), u8)  # predict's round trip
    p = open_for_inference(ModelSource.exported(out))  # as predict / eval / serve open it
    assert p.classes == list(model.default_cfg["classes"]) and torch.equal(p(prepared).argmax(1), want)


def test_predict_on_pt2_gives_the_checkpoints_classes(
    fmnist: tuple[torch.Tensor, torch.nn.Module], u8_export: Callable[[str], Path], small_pt2: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """predict on the trained googlenet_small exported by the CLI (the uint8 program the test above
    checks, one export less) and on a float-input program (``micro_model``'s: the same predict path)."""
    from PIL import Image

    images, _ = fmnist
    files = []
    for i in range(8):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(images[i].numpy()).save(files[-1])
    out = u8_export("pt2")
    capsys.readouterr()
    assert (
        cli.main(["predict", "--model", "googlenet_small", "--weights", "fashion_mnist", "--json", *files])
        == 0
    )
    want = json.loads(capsys.readouterr().out)
    assert cli.main(["predict", "--onnx", str(out), "--json", *files]) == 0
    got = json.loads(capsys.readouterr().out)
    top = [[t["label"] for t in r["top"]] for r in got]  # "top": [{label, index, prob}, ...]
    assert len(top) == len(files) and top == [[t["label"] for t in r["top"]] for r in want]
    # eval takes the exported file too (--onnx: any exported format), with the same numbers
    ev = ["eval", "--limit", "48", "-b", "16", "--json", "--no-progress"]
    assert cli.main([*ev, "--model", "googlenet_small", "--weights", "fashion_mnist"]) == 0
    eager_res = json.loads(capsys.readouterr().out)
    assert cli.main([*ev, "--onnx", str(out)]) == 0
    pt2_res = json.loads(capsys.readouterr().out)
    assert pt2_res["images"] == eager_res["images"] == 48
    assert pt2_res["acc1"] == eager_res["acc1"] and pt2_res["loss"] == pytest.approx(eager_res["loss"], abs=1e-4)
    assert cli.main([*ev, "--onnx", str(out), "--tta", "flip"]) == 2
    one_error_line(capsys.readouterr().err, "--onnx runs the exported file as it is")
    assert "input_dtype" not in E.read_metadata(small_pt2)  # a float-input program: eager's labels
    torch.manual_seed(1)
    noise = torch.randint(0, 256, (4, 32, 32), dtype=torch.uint8)  # at its input size: no resize
    names = [str(tmp_path / f"n{i}.png") for i in range(len(noise))]
    for name, im in zip(names, noise):
        Image.fromarray(im.numpy()).save(name)
    assert cli.main(["predict", "--onnx", str(small_pt2), "--json", *names]) == 0
    got = json.loads(capsys.readouterr().out)
    tf = D.eval_transform(D.InputConfig(32, 1, (0.5,), (0.25,)), 1, 32)  # _export's metadata
    prepared = torch.stack([tf(im[None]) for im in noise])
    with torch.no_grad():
        labels = [f"c{i}" for i in micro_model()(prepared).argmax(1).tolist()]
    assert [r["top"][0]["label"] for r in got] == labels


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """One AOTInductor package of ``micro_model``, compiled once. AOTInductor = torch.export (run on
    each registry model above) + Inductor's codegen and C++ compile, which take minutes for
    googlenet_small's graph and test nothing of ours the micro graph does not; the C++ wrapper is
    compiled at -O0 (its default -O1 takes twice as long; the kernels keep their -O3)."""
    model = micro_model()
    out = tmp_path_factory.mktemp("aoti") / "micro.pt2"
    with torch._inductor.config.patch({"aot_inductor.compile_wrapper_opt_level": "O0"}):
        _export(model, "micro", out, fmt="aoti")
    return out, model


@pytest.mark.slow
def test_aoti_package_reloads_without_inceptionnet_and_is_told_apart(
    aoti_package: tuple[Path, torch.nn.Module], small_pt2: Path, tmp_path: Path
) -> None:
    out, model = aoti_package
    assert pt2.pt2_kind(out) == "aoti" and pt2.pt2_kind(small_pt2) == "pt2"
    assert E.written_by_export(out, "aoti")
    x = torch.randn(4, 1, 32, 32)
    y, meta = _run_fresh("aoti", out, x, tmp_path)
    with torch.no_grad():
        verify.check_close(y, model(x), "fresh aoti_load_package", atol=ATOL, rtol=0)
    assert meta["pt2_kind"] == "aoti" and meta["model_name"] == "micro"
    p = open_for_inference(ModelSource.exported(out))
    assert p.backend == "aotinductor" and p.classes[0] == "c0"
    with torch.no_grad():
        verify.check_close(p(x), model(x), "predictor on the package", atol=ATOL, rtol=0)


@pytest.mark.slow
def test_aoti_backend_record_runs_what_export_packages() -> None:
    """``deploy.backends.REGISTRY["aoti"]``: the fast path (and bench) on an AOTInductor package of
    the graph, dynamic batch; on request only (slow: it compiles C++)."""
    from inceptionnet.deploy.backends import REGISTRY, Candidate
    from inceptionnet.deploy.fast import optimize_for_inference

    assert REGISTRY["aoti"].slow and Candidate.parse("aoti-bf16") == Candidate("aoti", "bfloat16")
    model = micro_model()
    x = torch.randn(4, 1, 32, 32)
    with torch._inductor.config.patch({"aot_inductor.compile_wrapper_opt_level": "O0"}):
        fast = optimize_for_inference(model, x[:1], backend="aoti")  # batch 1: still a dynamic batch
    with torch.no_grad():
        verify.check_close(fast(x), model(x), "aoti backend", atol=ATOL, rtol=0)
        verify.check_close(fast(x[:1]), model(x[:1]), "aoti backend, batch 1", atol=ATOL, rtol=0)
    assert fast.backend == "aoti"
