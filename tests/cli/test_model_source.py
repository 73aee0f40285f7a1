"""``checkpoint.ModelSource``: each kind parsed from the shared flags, conflicting flags as one
UsageError line, checkpoint metadata read once, and ``open_for_inference`` of each kind."""

from __future__ import annotations

import argparse

import pytest
import torch

from inceptionnet import checkpoint as C
from inceptionnet.checkpoint import ModelSource, open_for_inference, open_model
from inceptionnet.commands._args import add_fast_args, add_model_args, add_onnx_arg
from inceptionnet.errors import UsageError
from inceptionnet.models import _builder


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_model_args(p)
    add_fast_args(p)
    add_onnx_arg(p, "an exported file")
    return p.parse_args(list(argv))


KINDS = [
    (["--checkpoint", "best.pt"], ModelSource("checkpoint", path="best.pt"), "checkpoint best.pt"),
    (["--checkpoint", "best.pt", "--model", "googlenet_small"],
     ModelSource("checkpoint", path="best.pt", model_name="googlenet_small"), "checkpoint best.pt"),
    (["--model", "googlenet_small", "--weights", "fashion_mnist"],
     ModelSource("model", model_name="googlenet_small", weights="fashion_mnist"), "weights fashion_mnist"),
    (["--model", "googlenet_small", "--weights", "w.pth"],
     ModelSource("model", model_name="googlenet_small", weights="w.pth"), "weights w.pth"),
    (["--onnx", "m.onnx"], ModelSource("exported", path="m.onnx", format="onnx"), "ONNX file m.onnx"),
]  # fmt: skip


@pytest.mark.parametrize("argv, want, described", KINDS, ids=[" ".join(a) for a, _, _ in KINDS])
def test_each_kind_from_the_flags(argv, want, described):
    got = ModelSource.from_args(parse(*argv))
    assert got == want and got.describe() == described


def test_untrained_source_and_describe():
    s = ModelSource.model("googlenet_small", num_classes=10, in_chans=1, model_kwargs={"width": 0.125})
    assert s.kind == "model" and s.weights is None and s.describe() == "untrained (random init)"
    model, icfg, classes, name = open_model(s)
    assert name == "googlenet_small" and model.num_classes == 10 and icfg.in_chans == 1 and len(classes) == 10


CONFLICTS = [
    (["--checkpoint", "a.pt", "--weights", "b.pt"], "not both"),
    (["--model", "googlenet_small"], "--model needs --weights"),
    (["--weights", "b.pt"], "give --checkpoint FILE, or --model NAME --weights ENTRY|FILE"),
    ([], "give --checkpoint FILE, or --model NAME --weights ENTRY|FILE"),
    (["--onnx", "m.onnx", "--checkpoint", "a.pt"], "--onnx runs the exported file on its own; drop --checkpoint"),
    (["--onnx", "m.onnx", "--model", "x"], "drop --model"),
    (["--checkpoint", " "], "--checkpoint is empty"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", CONFLICTS, ids=[" ".join(a) or "none" for a, _ in CONFLICTS])
def test_conflicting_flags_are_one_usage_error_line(argv, message):
    with pytest.raises(UsageError) as e:
        ModelSource.from_args(parse(*argv))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_serve_names_its_verb():
    with pytest.raises(UsageError, match="--onnx serves the exported file on its own; drop --weights"):
        ModelSource.from_flags(weights="w", exported="m.onnx", exported_verb="serves")


@pytest.fixture
def ckpt(tmp_path):
    from inceptionnet import create_model
    from inceptionnet.data import InputConfig

    m = create_model("googlenet_small", num_classes=3, in_chans=1, width=0.125)
    icfg = InputConfig(input_size=16, in_chans=1, mean=(0.5,), std=(0.25,))
    path = tmp_path / "best.pt"
    torch.save({"model": m.state_dict(), "model_name": "googlenet_small", "model_kwargs": {"width": 0.125},
                "classes": ["a", "b", "c"], "data_cfg": icfg.to_dict()}, path)  # fmt: skip
    return path


@pytest.mark.parametrize("how", ["checkpoint", "model + file"])
def test_metadata_is_read_once(ckpt, how, monkeypatch):
    calls = []
    real = _builder.read_checkpoint_meta

    def counted(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(_builder, "read_checkpoint_meta", counted)
    source = (
        ModelSource.checkpoint(ckpt) if how == "checkpoint" else ModelSource.model("googlenet_small", ckpt)
    )
    p = open_for_inference(source)
    assert len(calls) == 1
    # the checkpoint's own metadata, whichever way it was named
    assert p.classes == ["a", "b", "c"] and p.input_config.input_size == 16 and p.input_config.mean == (0.5,)
    assert p.model_name == "googlenet_small" and p.backend == "eager" and p.module is not None
    assert p(torch.zeros(2, 1, 16, 16)).shape == (2, 3)


def test_a_checkpoint_of_another_model_is_refused_either_way(ckpt):
    from inceptionnet.errors import CheckpointError

    for source in (ModelSource.checkpoint(ckpt, "inception_v3"), ModelSource.model("inception_v3", ckpt)):
        with pytest.raises(CheckpointError, match="is a googlenet_small checkpoint, not inception_v3"):
            open_model(source)


def test_fast_path_and_its_flags(ckpt):
    with pytest.raises(UsageError, match="--dtype bf16 needs --backend"):
        open_for_inference(ModelSource.checkpoint(ckpt), dtype="bf16")
    with pytest.raises(UsageError, match="--backend 'tpu': choose one of"):
        open_for_inference(ModelSource.checkpoint(ckpt), backend="tpu")
    p = open_for_inference(ModelSource.checkpoint(ckpt), backend="eager", batch=2)
    assert p.fast is not None and p.runs_on == "eager fp32 on cpu" and p.classes == ["a", "b", "c"]
    assert p(torch.zeros(2, 1, 16, 16)).shape == (2, 3)


def test_exported_file_runs_with_its_own_metadata(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    from inceptionnet.cli import main as cli

    onnx = tmp_path / "m.onnx"
    assert cli(["export", "--checkpoint", str(ckpt), "--batch", "2", "-o", str(onnx)]) == 0
    p = open_for_inference(ModelSource.from_flags(exported=str(onnx)))
    assert p.module is None and p.backend == "onnxruntime" and p.fixed_batch == 2
    assert p.classes == ["a", "b", "c"] and p.input_config.input_size == 16
    eager = open_for_inference(ModelSource.checkpoint(ckpt))
    x = torch.randn(3, 1, 16, 16)  # 3 rows through a file that takes 2: padded and split
    torch.testing.assert_close(p(x), eager(x), rtol=1e-4, atol=1e-4)
    assert p.source.id().startswith("m.onnx sha256:")
    with pytest.raises(UsageError, match="drop --backend"):
        open_for_inference(p.source, backend="auto")
    with pytest.raises(UsageError, match="no PyTorch module"):
        open_model(p.source)


def test_load_for_inference_is_the_thin_wrapper(ckpt):
    model, name, icfg, classes = C.load_for_inference(str(ckpt), None, None)
    assert name == "googlenet_small" and classes == ["a", "b", "c"] and icfg.input_size == 16
    assert not model.training
