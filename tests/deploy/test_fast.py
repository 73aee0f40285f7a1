"""optimize_for_inference backends vs eager, BN folding + 1x1 merging, and ``bench --json``'s schema.
No timing assertions."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import inceptionnet
from helpers import BIG_MODELS, model_params
from inceptionnet import bench as bench_lib
from inceptionnet.commands import bench
from inceptionnet.deploy.fast import FastInferenceError, optimize_for_inference
from inceptionnet.deploy.fold import fold_bn, merge_parallel_convs
from inceptionnet.deploy.openvino import available as openvino_available

# The small configs: the Inception-ResNets with one block of each kind (A, B, C), so every block
# class is folded and merged (the path), not 10 / 20 / 10 copies of it; googlenet_small at width 0.125
SMALL_KWARGS: dict[str, dict[str, object]] = {
    "googlenet_small": {"width": 0.125},  # helpers.SMALL's width
    "inception_resnet_v1": {"num_blocks": (1, 1, 1)},
    "inception_resnet_v2": {"num_blocks": (1, 1, 1)},
}
# 1x1 convs merged in those small configs (the full ones: 48 and 96)
SMALL_MERGES = {"inception_resnet_v1": 10, "inception_resnet_v2": 13}


def small_size(name: str, model: nn.Module | None = None) -> int:
    """The registry's small configs: the GoogLeNets at 32x32, helpers.BIG_MODELS at their minimum size
    (``model``'s, when given: no second model is built)."""
    if name not in BIG_MODELS:
        return 32
    return int((model or inceptionnet.create_model(name, num_classes=10)).min_input_size)


def _trained_stats(name: str, size: int | None, **kw: object) -> nn.Module:
    """A model whose BNs have non-trivial running statistics and affine parameters (trained at ``size``,
    None: ``small_size``)."""
    m = inceptionnet.create_model(name, num_classes=10, **kw)
    size = size or small_size(name, m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        m.train()
        for _ in range(3):
            m(torch.randn(4, 3, size, size) * 2 + 0.5)
    return m.eval()


def _close(got: torch.Tensor, ref: torch.Tensor) -> None:
    tol = 1e-4 + 1e-5 * float(ref.abs().max())
    assert float((got.float() - ref).abs().max()) <= tol


@pytest.mark.parametrize("name", model_params())
def test_fold_and_merge_preserve_outputs(name: str) -> None:
    m = _trained_stats(name, None, **SMALL_KWARGS.get(name, {}))
    size = small_size(name, m)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref = m(x)
        folded = fold_bn(m)
        _close(folded(x), ref)
        merged, n = merge_parallel_convs(folded)
        if name in SMALL_MERGES:
            assert n == SMALL_MERGES[name]
        else:
            assert n >= (27 if name.startswith("googlenet") else 20)  # 9 blocks x 3 in the GoogLeNets
        _close(merged(x), ref)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in merged.modules())


def test_merge_googlenet_block_structure() -> None:
    m = fold_bn(_trained_stats("googlenet", 32))
    merged, _ = merge_parallel_convs(m)
    block = merged.inception3a
    convs = [mod for mod in block.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1)]
    # branch1 (64) + 3x3-reduce (96) + 5x5-reduce (16) -> one conv of 176; the pool projection stays
    assert sorted(c.out_channels for c in convs) == [32, 176]


# the backends' paths are the same for every model (export to ONNX / OpenVINO, check, time): the
# engines on one small model; the big residual model on eager (its merged graph's outputs; every
# model's fold + merge is checked above, every model's ONNX export in test_export.py)
@pytest.mark.parametrize(
    ("name", "size", "backend"),
    [("googlenet", 32, "eager"), ("googlenet", 32, "onnxruntime"), ("googlenet", 32, "auto"),
     pytest.param("inception_resnet_v2", 75, "eager", marks=pytest.mark.slow)],
)  # fmt: skip
def test_backends_match_eager(name: str, size: int, backend: str) -> None:
    m = _trained_stats(name, size, **SMALL_KWARGS.get(name, {}))
    x = torch.randn(2, 3, size, size)
    fast = optimize_for_inference(m, x, backend=backend)
    assert fast.max_abs_diff <= fast.tolerance
    assert fast.top1_agreement == 1.0
    if backend == "auto":  # every installed fp32 backend but compile (slow to build) is a candidate
        names = {"eager", "onnxruntime"} | ({"openvino"} if openvino_available() else set())
        assert fast.backend in names and set(fast.timings) == names
    x2 = torch.randn(3, 3, size, size)  # another batch size: dynamic batch
    with torch.no_grad():
        _close(fast(x2), m(x2))
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())  # the original is untouched


def test_bf16_reports_top1_agreement() -> None:
    m = _trained_stats("googlenet", 32)
    fast = optimize_for_inference(m, torch.randn(4, 3, 32, 32), backend="eager", dtype=torch.bfloat16)
    assert fast.dtype == torch.bfloat16 and 0.0 <= fast.top1_agreement <= 1.0
    with pytest.raises(FastInferenceError, match="top-1 agreement"):
        optimize_for_inference(
            m, torch.randn(4, 3, 32, 32), backend="eager", dtype=torch.bfloat16, min_top1_agreement=1.01
        )


def test_bad_arguments() -> None:
    m = inceptionnet.create_model("googlenet_small", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown backend"):
        optimize_for_inference(m, x, backend="tensorrt")
    with pytest.raises(ValueError, match="runs fp32 and int8 only, not bf16"):
        optimize_for_inference(m, x, backend="onnxruntime", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="dtype='auto' chooses among backends"):
        optimize_for_inference(m, x, backend="eager", dtype="auto")


def test_backend_registry_and_candidates() -> None:
    from inceptionnet.deploy.backends import REGISTRY, Candidate, all_candidates
    from inceptionnet.deploy.fast import BACKENDS, DTYPES

    assert ("auto", *REGISTRY) == BACKENDS and set(DTYPES) == {"fp32", "bf16", "int8"}
    for text in ("eager", "eager-bf16", "onnxruntime-int8", "openvino"):
        assert str(Candidate.parse(text)) == text  # the spelling of flags and printed output
    assert Candidate.parse("openvino-int8") == Candidate("openvino", "int8")
    assert Candidate.parse("eager", "bfloat16") == Candidate("eager", "bfloat16")
    with pytest.raises(ValueError, match="unknown candidate 'tensorrt'"):
        Candidate.parse("tensorrt")
    names = [str(c) for c in all_candidates()]
    assert [b for b in bench_lib.INFER_BACKENDS if not b.startswith("tv-")] == names
    assert all(b.removeprefix("tv-") in names for b in bench_lib.PEERS)


def test_fma_probe_says_why_or_measures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from inceptionnet.deploy import probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fma, why = probe.fma_peak(1)
    assert (fma is None) == bool(why)
    assert fma is None or fma["fp32_fma_gflops"] > 0
    monkeypatch.setattr(probe.shutil, "which", lambda name: None)
    assert probe.fma_peak(1) == (None, "no C compiler (gcc or cc) on PATH to build fma_peak.c")


@pytest.mark.slow
def test_compile_matches_eager() -> None:
    # torch.compile's cold compile grows with the graph: 36 s for googlenet_small at width 0.125 on
    # 2 cores (AMD Zen 4), so the micro model: the backend's path (freezing, the checks vs eager) is
    # the same for every model, and the merged graph it starts from is checked by the eager tests
    from helpers import micro_model

    m = micro_model(in_chans=3)
    for mod in m.modules():  # BN statistics that are not the identity: freezing folds them
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    # Inductor's scalar C++ kernels: its vectorized codegen (both forms of every loop) was most of the
    # compile time; the backend's path (freezing, the checks vs eager) is the same
    from torch._inductor import config as inductor_config

    with inductor_config.patch({"cpp.vec_isa_ok": False}):
        fast = optimize_for_inference(m, torch.randn(2, 3, 32, 32), backend="compile")
    assert fast.backend == "compile" and fast.max_abs_diff <= fast.tolerance
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(x), m(x), atol=1e-5)


def test_bench_json_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path, small_gemm_peak: None) -> None:
    args = bench.get_args_parser().parse_args(
        ["--models", "googlenet_small", "--input-size", "16", "--batch-sizes", "2", "--repeats", "2",
         "--warmup", "1", "--num-classes", "10", "--backends", "eager", "onnxruntime", "--json",
         "--output-dir", str(tmp_path)]
    )  # fmt: skip
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    md = (tmp_path / "bench.md").read_text().splitlines()
    assert md[0].startswith("| model (input) |") and len(md) == 2 + len(report["results"])
    assert md[2].startswith("| googlenet_small (16) | 2 | tv-eager | float32 |") and "| 1.00 |" in md[2]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["schema"] == 2 and report["mode"] == "infer"
    assert set(report["env"]) == {
        "torch", "onnxruntime", "threads", "cpu", "bf16_native", "cpu_model", "cpu_flags", "openvino", "nncf"
    }  # fmt: skip
    assert report["config"]["backends"] == ["tv-eager", "eager", "onnxruntime"]
    assert report["peak_gflops"]["float32"] > 0
    keys = {
        "model", "source", "backend", "dtype", "batch_size", "input_size", "status", "median_s", "min_s",
        "img_per_s", "ratio_vs_tv_eager", "gflops", "pct_of_peak", "setup_s", "max_abs_diff", "note",
    }  # fmt: skip
    rows = report["results"]
    assert [r["backend"] for r in rows] == ["tv-eager", "eager", "onnxruntime"]
    for r in rows:
        assert set(r) == keys and r["status"] == "ok" and r["source"] == "inceptionnet"
        assert r["min_s"] <= r["median_s"] and r["img_per_s"] > 0 and r["ratio_vs_tv_eager"] > 0
        assert r["max_abs_diff"] <= 1e-3
    assert rows[0]["ratio_vs_tv_eager"] == 1.0


def test_bench_train_json(capsys: pytest.CaptureFixture[str], small_gemm_peak: None) -> None:
    args = bench.get_args_parser().parse_args(
        ["--models", "googlenet_small", "--input-size", "16", "--batch-sizes", "2", "--repeats", "2",
         "--warmup", "1", "--num-classes", "10", "--mode", "train", "--json"]
    )  # fmt: skip
    assert bench.main(args) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [r["backend"] for r in rows] == ["tv-train-fp32", "train-fast"]
    assert all(r["status"] == "ok" and r["img_per_s"] > 0 for r in rows)


def test_bench_rejects_unknown_backend() -> None:
    args = bench.get_args_parser().parse_args(["--backends", "tensorrt", "--json"])
    with pytest.raises(ValueError, match="unknown infer backend"):
        bench_lib.run_bench(args)
