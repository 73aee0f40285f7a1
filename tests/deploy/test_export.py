"""Export: ONNX (checked, run in ONNX Runtime) and TorchScript (reloaded) for every registered model,
BatchNorm folding, metadata, atomic replacement, ``predict --onnx`` and the command's errors."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import inceptionnet
from helpers import BIG_MODELS, SMALL_MODELS, model_params
from inceptionnet import cli
from inceptionnet.deploy import export as E
from inceptionnet.deploy import verify
from inceptionnet.deploy.fold import count_batchnorm, fold_bn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
# helpers.BIG_MODELS are exported at model.min_input_size (and marked slow); the GoogLeNets at 32x32.
# The Inception-ResNets in their small configs: one A, B and C block (every block class, the
# residual scaling included, in a fraction of the graph); googlenet_small at width 0.125.
SMALL_KWARGS: dict[str, dict[str, object]] = {
    "googlenet_small": {"width": 0.125},
    "inception_resnet_v1": {"num_blocks": (1, 1, 1)},
    "inception_resnet_v2": {"num_blocks": (1, 1, 1)},
}
MODELS = model_params()
ATOL = 1e-4  # the fp32 bound; the tests pass rtol=0 so it applies as it is


def conditioned(name: str, **kwargs: object) -> tuple[nn.Module, int]:
    """A model in eval mode with weights like a trained one's in scale, and its test input size.

    Fresh init leaves BN at (mean 0, var 1) and the logits of an untrained network ~1e-18 (googlenet's
    std-0.01 init) or ~1e8 (inception_v3's std-0.1 init): an absolute tolerance then means nothing.
    Variance-preserving convs, BN layers with non-trivial statistics (so folding them changes the
    weights) and a classifier scaled to logits of order 0.1-10, as a trained model gives.
    """
    model = inceptionnet.create_model(name, num_classes=10, **kwargs)  # type: ignore[arg-type]
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.25 / math.sqrt(m.in_features))
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
            m.running_mean.normal_(std=0.1)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    return model.eval(), model.min_input_size if name in BIG_MODELS else 32


def meta_for(name: str, size: int) -> dict[str, object]:
    return {"model_name": name, "input_size": [3, size, size], "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_eager_in_onnx_runtime(name, tmp_path):
    model, size = conditioned(name, **SMALL_KWARGS.get(name, {}))
    path = tmp_path / f"{name}.onnx"
    res = E.export_model(
        model, path, input_size=(size, size), in_chans=3, metadata=meta_for(name, size), rtol=0
    )
    assert res.max_abs_diff <= ATOL and res.exporter == "TorchScript-based torch.onnx exporter"
    print(f"{name} onnx {size}x{size}: max abs diff {res.max_abs_diff:.2e}")
    onnx.checker.check_model(str(path))
    sess = E.ort_session(path)
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # dynamic batch axis
    x = torch.randn(1, 3, size, size)  # a batch size it was neither exported nor verified with
    with torch.no_grad():
        ref = model(x)
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    assert np.abs(got - ref.numpy()).max() <= ATOL
    meta = E.decode_onnx_metadata(sess.get_modelmeta().custom_metadata_map)
    assert meta["model_name"] == name and meta["input_size"] == [3, size, size] and meta["batch"] == "dynamic"
    assert meta["opset"] == E.DEFAULT_OPSET and meta["format"] == "onnx"


# Scripting every model is tests/models/test_backbone.py's test_model_forward_torchscript, and folding
# every model is tests/deploy/test_fast.py's test_fold_and_merge_preserve_outputs; the export's save,
# metadata and reload path is the same for all: the small models and one big one here.
@pytest.mark.parametrize("name", model_params([*SMALL_MODELS, "inception_v3"]))
def test_torchscript_roundtrip_with_folded_batchnorm(name, tmp_path):
    """Scripted (not traced); exported from the BN-folded copy and compared with the unfolded eager
    model, so the folding is checked too."""
    model, size = conditioned(name, **SMALL_KWARGS.get(name, {}))
    folded = fold_bn(model)
    assert (count_batchnorm(model) > 0) == (name != "googlenet_paper")  # the paper's has no BN
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    path = tmp_path / f"{name}.pt"
    res = E.export_model(
        folded, path, fmt="torchscript", input_size=(size, size), in_chans=3, metadata=meta_for(name, size),
        reference=model, rtol=0,
    )  # fmt: skip
    print(f"{name} torchscript (folded) {size}x{size}: max abs diff {res.max_abs_diff:.2e}")
    assert res.exporter == "torch.jit.script" and res.max_abs_diff <= ATOL
    assert E.read_metadata(path)["model_name"] == name
    loaded = torch.jit.load(str(path))
    x = torch.randn(5, 3, size, size)
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() <= ATOL


def test_fold_bn_returns_a_copy_and_keeps_the_original():
    model, size = conditioned("googlenet_small", width=0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_bn(model)
    assert folded is not model and count_batchnorm(model) == 66 and count_batchnorm(folded) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(
        m.conv.bias is not None
        for m in folded.modules()
        if isinstance(m, inceptionnet.models.layers.ConvBNAct)
    )
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() <= ATOL


def test_trace_is_the_fallback(tmp_path, monkeypatch):
    def no_script(*args, **kwargs):
        raise RuntimeError("not scriptable")

    monkeypatch.setattr(torch.jit, "script", no_script)
    model, size = conditioned("googlenet_small", width=0.125)
    res = E.export_model(
        model, tmp_path / "t.pt", fmt="torchscript", input_size=(size, size), in_chans=3, rtol=0
    )
    assert res.exporter == "torch.jit.trace" and res.max_abs_diff <= ATOL


def test_dynamo_exporter_and_fixed_batch(tmp_path):
    model, size = conditioned("googlenet_small", width=0.125)
    path = tmp_path / "d.onnx"
    res = E.export_model(model, path, input_size=(size, size), in_chans=3, batch=4, dynamo=True, rtol=0)
    assert res.exporter == "dynamo torch.onnx exporter" and res.max_abs_diff <= ATOL and res.verify_batch == 4
    assert E.ort_session(path).get_inputs()[0].shape == [4, 3, size, size]
    assert E.read_metadata(path)["opset"] == E.DYNAMO_MIN_OPSET


# --------------------------------------------------------------------------------------------------
# Atomic replacement


def test_failed_verification_keeps_the_existing_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous, good export")
    monkeypatch.setattr(verify, "max_abs_diff", lambda a, b: 0.5)
    argv = [
        "export",
        "googlenet_small",
        "--model-kwargs",
        "width=0.125",
        "--input-size",
        "8",
        "8",
        "-o",
        str(out),
        "--overwrite",  # the previous file is plain text, not an export of ours
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ONNX Runtime: max abs diff 0.5") and "\n" not in err
    assert out.read_bytes() == b"the previous, good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left behind
    monkeypatch.undo()
    assert cli.main(argv) == 0
    assert E.read_metadata(out)["model_name"] == "googlenet_small"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not the temp file's private mode


# --------------------------------------------------------------------------------------------------
# A trained checkpoint: export through the CLI, predict through ONNX Runtime vs PyTorch


@pytest.fixture(scope="module")
def trained(trained_run, tmp_path_factory):
    """The session's trained checkpoint (conftest.trained_run) and ten digit PNGs."""
    tmp = tmp_path_factory.mktemp("digits")
    from inceptionnet.data import load_digits_arrays

    images, labels = load_digits_arrays()
    paths = []
    for i in range(0, 40, 4):
        p = tmp / f"digit{i}_{int(labels[i])}.png"
        Image.fromarray(images[i].numpy(), mode="L").save(p)
        paths.append(str(p))
    return trained_run / "best.pt", paths


def _predict_json(argv, capsys):
    capsys.readouterr()
    assert cli.main(["predict", "--json", "--topk", "3", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_checkpoint_export_and_onnx_predict_match_pytorch(trained, tmp_path, capsys):
    ckpt, images = trained
    onnx_path = tmp_path / "digits.onnx"
    assert cli.main(["export", "--checkpoint", str(ckpt), "-o", str(onnx_path)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["exported", "checked", "ONNX", "wrote"], out
    assert "max abs diff" in lines[2] and err == ""  # the exporters' warnings stay out of the way
    meta = E.read_metadata(onnx_path)
    assert meta["model_name"] == "googlenet_small" and meta["input_size"] == [1, 8, 8]
    assert meta["classes"] == [str(i) for i in range(10)] and meta["dataset"] == "digits"
    assert meta["mean"] == pytest.approx([0.3057]) and meta["std"] == pytest.approx([0.3806])

    torch_res = _predict_json(["--checkpoint", str(ckpt), *images], capsys)
    onnx_res = _predict_json(["--onnx", str(onnx_path), *images], capsys)
    assert [r["top"][0]["label"] for r in onnx_res] == [r["top"][0]["label"] for r in torch_res]
    for a, b in zip(onnx_res, torch_res):
        assert [t["prob"] for t in a["top"]] == pytest.approx([t["prob"] for t in b["top"]], abs=1e-5)

    # the deployment path imports no model code
    code = (
        "import sys; from inceptionnet.cli import main; "
        f"rc = main(['predict', '--onnx', {str(onnx_path)!r}, {images[0]!r}]); "
        "assert rc == 0; "
        "loaded = [m for m in sys.modules if m.startswith('inceptionnet.models')]; "
        "assert not loaded, loaded; print('no model code')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("no model code")
    assert proc.stdout.splitlines()[0].startswith(images[0] + ": ")

    # TorchScript from the same checkpoint, BN folded, via the CLI
    ts = tmp_path / "digits.pt"
    assert cli.main(["export", "--checkpoint", str(ckpt), "--fold-bn", "-o", str(ts)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("folded 66 of 66 BatchNorm layers")
    assert E.read_metadata(ts)["fold_bn"] is True


def test_predict_onnx_with_fixed_batch_and_errors(tmp_path, capsys):
    onnx_path = tmp_path / "fixed.onnx"
    argv = [
        "export",
        "googlenet_small",
        "--model-kwargs",
        "width=0.125",
        "--in-chans",
        "1",
        "--num-classes",
        "4",
    ]
    assert cli.main([*argv, "--input-size", "8", "8", "--batch", "2", "-o", str(onnx_path)]) == 0
    img = tmp_path / "x.png"
    Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10), mode="L").save(img)
    res = _predict_json(["--onnx", str(onnx_path), str(img)], capsys)
    assert [t["label"] for t in res[0]["top"]] and "error" not in res[0]  # labels 0..3: no classes known
    assert E.read_metadata(onnx_path).get("classes") is None

    # a file without our metadata, and --onnx mixed with a checkpoint
    bare = onnx.load(str(onnx_path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    for extra, msg in [
        (["--onnx", str(tmp_path / "bare.onnx")], "has no inceptionnet metadata"),
        (["--onnx", str(onnx_path), "--checkpoint", "c.pt"], "drop --checkpoint"),
        (["--onnx", str(tmp_path / "missing.onnx")], "does not exist"),
        (["--onnx", str(img)], "cannot load ONNX file"),
    ]:
        capsys.readouterr()
        assert cli.main(["predict", *extra, str(img)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err, err


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["nosuchnet", "-o", "x.onnx"], "unknown model 'nosuchnet'"),
        (["-o", "x.onnx"], "give a model NAME or --checkpoint"),
        (["googlenet_small", "-o", "x.bin"], "cannot tell the format"),
        (
            ["googlenet_small", "--batch", "0", "-o", "x.onnx"],
            "--batch must be 'dynamic' or a positive integer",
        ),
        (["googlenet_small", "--batch", "many", "-o", "x.onnx"], "--batch must be"),
        (["googlenet_small", "--opset", "17", "-o", "x.pt"], "--opset applies to --format onnx"),
        (["googlenet_small", "--opset", "3", "-o", "x.onnx"], "--opset must be between"),
        (
            ["--checkpoint", "c.pt", "--num-classes", "3", "-o", "x.onnx"],
            "only apply to a model built from scratch",
        ),
        (["--checkpoint", "missing.pt", "-o", "x.onnx"], "does not exist"),
        (["googlenet_small", "--model-kwargs", "nope=1", "-o", "x.onnx"], "bad --model-kwargs"),
        (
            ["googlenet_small", "--model-kwargs", "width=0.125", "--input-size", "2", "2", "-o", "x.onnx"],
            "too small",
        ),
        (["googlenet_small", "--format", "onnx", "-o", "."], "is a directory"),
    ],
)
def test_bad_arguments_are_one_error_line(argv, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_export_needs_output_and_valid_format(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "googlenet_small"])  # -o is required: argparse's usage error
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["export", "googlenet_small", "--format", "tflite", "-o", "x"])


# --------------------------------------------------------------------------------------------------
# README


def _readme_export_section() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Export\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, "README has no '## Export' section"
    return m.group(1)


def test_readme_export_commands_and_onnx_runtime_snippet_run_as_written(tmp_path, monkeypatch, capsys):
    section = _readme_export_section()
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert snippet
    code = snippet.group(1)
    assert len(code.strip().splitlines()) <= 5
    # the README's export command for the file the snippet opens, run as written
    onnx_file = re.search(r'InferenceSession\("([^"]+)"', code).group(1)  # type: ignore[union-attr]
    commands = [ln for ln in section.splitlines() if "inceptionnet export" in ln and f"-o {onnx_file}" in ln]
    assert commands, f"no export command in the README writes {onnx_file}"
    argv = shlex.split(commands[0].split("#")[0])
    assert argv[0].endswith("inceptionnet") and argv[1] == "export"
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv[1:]) == 0
    capsys.readouterr()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\[\d+\]", proc.stdout.strip()), proc.stdout
