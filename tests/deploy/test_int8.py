"""The int8 / bf16 fast paths (OpenVINO, ONNX Runtime QDQ) vs eager fp32 on a FIXED TRAINED model: the
shipped Fashion-MNIST googlenet_small on real test images (random-weight logits are near-ties, so
agreement on them would mean nothing). ``auto`` dropping a candidate that fails its accuracy check, the
code paths without OpenVINO, calibration inputs, bench's new rows. No timing assertions."""

import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import inceptionnet
from inceptionnet import bench as bench_lib
from inceptionnet import data as D
from inceptionnet.commands import bench
from inceptionnet.deploy import fast as fast_mod
from inceptionnet.deploy import openvino as OV
from inceptionnet.deploy import quant
from inceptionnet.deploy.backends import REGISTRY
from inceptionnet.deploy.fast import AgreementError, FastInferenceError, optimize_for_inference
from inceptionnet.deploy.quant import calibration_images, parse_dtype
from inceptionnet.deploy.verify import MIN_AGREEMENT_IMAGES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

needs_openvino = pytest.mark.skipif(
    not OV.available(), reason="openvino not installed (pip install '.[openvino]')"
)
N_CALIB = 128  # calibration images (train split); the checks run on other images (test split)


@pytest.fixture(scope="module")
def fm() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(the shipped trained model, 240 model-ready Fashion-MNIST test images, 128 train images)."""
    model = inceptionnet.create_model("googlenet_small", weights="fashion_mnist").eval()
    try:
        x = calibration_images("fashion_mnist:test", model, torch.zeros(1, 1, 28, 28), 240)
        calib = calibration_images("fashion_mnist:train", model, torch.zeros(1, 1, 28, 28), N_CALIB)
    except D.DataNotFoundError as e:  # pragma: no cover - make setup installs it
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    return model, x, calib


@pytest.fixture(scope="module")
def fm_top1(fm) -> torch.Tensor:
    """The eager fp32 model's top-1 class of each of fm's 240 test images, computed once."""
    model, x, _ = fm
    with torch.inference_mode():
        return model(x).argmax(1)


def _agreement(fast: object, top1: torch.Tensor, x: torch.Tensor) -> float:
    """Fraction of ``x`` on which ``fast`` gives the eager model's top-1 class (``top1``)."""
    with torch.inference_mode():
        return float((fast(x).argmax(1) == top1).float().mean())  # type: ignore[operator]


@pytest.fixture
def shared_qdq(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """ORT's QDQ quantization (quant.quantize_onnx_qdq), run once per distinct (fp32 file, images):
    onnxruntime-int8 and openvino-int8 quantize the same BN-folded file on the same images (the route
    test_fast_qdq.py checks), so the second engine reuses the first one's int8 file. The list counts
    the quantizations that really ran."""
    real, ran = quant.quantize_onnx_qdq, []

    def once(src, dst, images, *a, **kw):  # noqa: ANN001, ANN202
        key = (hashlib.sha256(Path(src).read_bytes()).hexdigest(), images.numpy().tobytes(), a, repr(kw))
        if key not in _QDQ_FILES:
            real(src, dst, images, *a, **kw)
            _QDQ_FILES[key] = Path(dst).read_bytes()
            ran.append(len(images))
        Path(dst).write_bytes(_QDQ_FILES[key])

    monkeypatch.setattr(quant, "quantize_onnx_qdq", once)
    return ran


_QDQ_FILES: dict[tuple[object, ...], bytes] = {}  # shared_qdq's int8 files, by (fp32 file, images, args)


@pytest.mark.parametrize(
    ("backend", "dtype", "min_agree"),
    [
        pytest.param("openvino", "fp32", 1.0, marks=needs_openvino),
        pytest.param("openvino", "bf16", 0.99, marks=needs_openvino),
        pytest.param("openvino", "int8", 0.96, marks=needs_openvino),  # 0.994 with 256 images: BENCHMARKS.md
        ("onnxruntime", "int8", 0.96),
    ],
)
def test_fast_paths_agree_with_eager_on_real_images(
    fm, fm_top1, shared_qdq, backend: str, dtype: str, min_agree: float
) -> None:
    model, x, calib = fm
    fast = optimize_for_inference(model, x[:8], backend=backend, dtype=dtype, calibration=calib)
    assert fast.backend == backend and fast.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16,
                                                      "int8": torch.qint8}[dtype]  # fmt: skip
    if dtype == "fp32":
        assert fast.max_abs_diff <= fast.tolerance
    else:  # measured on the calibration images: NaN would fail here
        assert fast.top1_agreement >= min_agree
    assert _agreement(fast, fm_top1, x) >= min_agree  # 240 test images, another batch size than the example
    assert fast(x[:1]).shape == (1, 10)  # batch 1 through the same engine


def test_auto_drops_a_candidate_that_fails_its_check(fm, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, _ = fm
    real = REGISTRY["onnxruntime"]

    def broken(job):  # "int8" that scrambles the classes: the fp32 engine, its logits rolled (no
        if job.calib is None:  # quantizing: what is tested is what auto does with a failed check)
            return real.build(job)
        fn = real.build(dataclasses.replace(job, calib=None))
        return lambda t: fn(t).roll(1, dims=1)

    monkeypatch.setitem(REGISTRY, "onnxruntime", dataclasses.replace(real, build=broken))
    calib = x[:MIN_AGREEMENT_IMAGES]  # the fewest images an agreement is claimed on
    fast = optimize_for_inference(
        model, x[:8], dtype="auto", candidates=["eager", "onnxruntime-int8"], calibration=calib
    )
    assert fast.backend == "eager" and fast.dtype == torch.float32
    assert str(fast.timings["onnxruntime-int8"]).startswith("dropped:")
    assert "top-1 agreement" in str(fast.timings["onnxruntime-int8"])
    assert isinstance(fast.timings["eager"], float)
    with pytest.raises(FastInferenceError, match="no backend passed"):
        optimize_for_inference(model, x[:8], dtype="int8", candidates=["onnxruntime"], calibration=calib)
    with pytest.raises(AgreementError, match="top-1 agreement"):  # its own type, outside auto too
        optimize_for_inference(
            model, x[:8], backend="onnxruntime", dtype="int8", calibration=calib, min_top1_agreement=0.99
        )


def test_auto_dtype_adds_lower_precision_only_with_calibration(fm) -> None:
    model, x, _ = fm
    fp32 = optimize_for_inference(model, x[:4], dtype="auto", candidates=["eager"])
    assert fp32.dtype == torch.float32 and set(fp32.timings) == {"eager"}
    names = [str(c) for c in fast_mod._candidates("auto", None, True, torch.device("cpu"))]
    assert "onnxruntime-int8" in names and "onnxruntime" in names and "eager" in names
    assert ("openvino-int8" in names) == OV.available()
    assert all(c.dtype == "float32" for c in fast_mod._candidates("auto", None, False, torch.device("cpu")))


def test_without_openvino(fm, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, _ = fm
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    monkeypatch.setitem(sys.modules, "nncf", None)
    assert not OV.available()
    with pytest.raises(ImportError, match=r"inceptionnet\[openvino\]"):
        optimize_for_inference(model, x[:4], backend="openvino")
    assert not any(
        c.backend == "openvino" for c in fast_mod._candidates("auto", None, True, torch.device("cpu"))
    )
    assert not any("openvino" in b for b in bench_lib.default_backends("infer"))
    fast = optimize_for_inference(  # ORT int8 still works
        model, x[:4], dtype="int8", calibration=x[:MIN_AGREEMENT_IMAGES]
    )
    assert fast.backend == "onnxruntime" and set(fast.timings) == {"onnxruntime"}


def test_calibration_inputs_and_dtype_names(fm) -> None:
    model, x, _ = fm
    ex = x[:2]
    assert calibration_images(x, model, ex, 16).shape == (16, 1, 28, 28)  # 16: MIN_AGREEMENT_IMAGES
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=7)
    got = calibration_images(loader, model, ex, 20)
    assert torch.equal(got, x[:20])
    named = calibration_images("fashion_mnist:test", model, ex, 16)
    assert named.shape == (16, 1, 28, 28) and -3 < float(named.mean()) < 3  # normalized, not 0..255
    with pytest.raises(ValueError, match="NAME:SPLIT"):
        calibration_images("mnist:train", model, ex, 16)
    with pytest.raises(ValueError, match="split"):
        calibration_images("fashion_mnist:holdout", model, ex, 16)
    with pytest.raises(ValueError, match="like the example"):
        calibration_images(torch.randn(4, 3, 28, 28), model, ex, 16)
    spellings = (torch.qint8, "int8", "BF16", torch.float32, "auto")
    assert [parse_dtype(d) for d in spellings] == ["int8", "int8", "bfloat16", "float32", "auto"]
    with pytest.raises(ValueError, match="dtype must be"):
        parse_dtype(torch.float16)
    with pytest.raises(ValueError, match="needs calibration"):
        optimize_for_inference(model, ex, backend="onnxruntime", dtype="int8")
    with pytest.raises(ValueError, match="runs fp32 and bf16 only"):
        optimize_for_inference(model, ex, backend="eager", dtype=torch.qint8, calibration=x)


def test_bench_json_with_peer_and_int8_rows(
    capsys: pytest.CaptureFixture[str], small_gemm_peak: None
) -> None:
    rows_wanted = ["tv-onnxruntime-int8", "onnxruntime-int8"]
    if OV.available():  # not openvino-int8: the same optimize_for_inference call as onnxruntime-int8's row,
        # and test_fast_paths_agree_with_eager_on_real_images runs it (each NNCF quantization is ~8 s)
        rows_wanted += ["tv-openvino", "tv-openvino-int8", "openvino-bf16"]
    args = bench.get_args_parser().parse_args(
        ["--models", "googlenet_small", "--input-size", "32", "--batch-sizes", "2", "--repeats", "1",
         "--warmup", "0", "--num-classes", "10", "--backends", *rows_wanted, "--json"]
    )  # fmt: skip
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == 2
    assert {"cpu_model", "cpu_flags", "openvino", "nncf"} <= set(report["env"])
    assert isinstance(report["env"]["cpu_flags"], list)
    assert report["peak_gflops"]["int8"] > 0
    fma = report["fma_peak"]
    assert fma is None or fma["fp32_fma_gflops"] > 0
    rows = {r["backend"]: r for r in report["results"]}
    assert list(rows) == ["tv-eager", *rows_wanted]
    for name, r in rows.items():
        assert r["status"] == "ok", r["note"]
        assert r["dtype"] == (
            "int8" if name.endswith("int8") else "bfloat16" if "bf16" in name else "float32"
        )
        assert r["img_per_s"] > 0
        if r["dtype"] != "bfloat16" or report["env"]["bf16_native"]:
            assert r["pct_of_peak"] > 0
        else:  # emulated bf16 has no GEMM peak to compare with
            assert r["pct_of_peak"] is None
    (summary,) = report["summary"]
    assert summary["best_ours"] in rows and not summary["best_ours"].startswith("tv-")
    assert summary["best_peer"] in bench_lib.PEERS and summary["ratio"] > 0
    assert set(summary) == {"model", "input_size", "batch_size", "best_ours", "best_peer", "ratio",
                            "best_ours_bf16", "best_peer_bf16", "ratio_bf16"}  # fmt: skip


@needs_openvino
def test_openvino_export_reloads_and_matches(
    fm, fm_top1, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inceptionnet import cli

    model, x, _ = fm
    out = tmp_path / "fm.xml"
    assert cli.main(["export", "googlenet_small", "--weights", "fashion_mnist", "-o", str(out)]) == 0
    assert "reloaded IR (OpenVINO) vs eager PyTorch" in capsys.readouterr().out
    assert out.with_suffix(".bin").is_file()
    loaded, meta = OV.load_ir(out)
    assert (
        meta["model_name"] == "googlenet_small"
        and meta["format"] == "openvino"
        and len(meta["classes"]) == 10
    )
    got = OV.Runner(OV.compile_model(loaded, "float32", 4))(x[:16])  # another batch than verified
    with torch.no_grad():
        ref = model(x[:16])
    assert float((got - ref).abs().max()) <= 1e-4 + 1e-5 * float(ref.abs().max())
    # int8 IR: verified by top-1 agreement on the calibration images
    out8 = tmp_path / "fm8.xml"
    argv = ["export", "googlenet_small", "--weights", "fashion_mnist", "--int8", "--calibration",
            "fashion_mnist:train", "--calibration-size", "200", "-o", str(out8)]  # fmt: skip
    assert cli.main(argv) == 0
    assert re.search(r"top-1 agreement 0\.9\d+ on 200 calibration images", capsys.readouterr().out)
    q, meta8 = OV.load_ir(out8)
    assert meta8["precision"] == "int8"
    assert _agreement(OV.Runner(OV.compile_model(q, "int8", 8)), fm_top1, x) >= 0.96


def test_int8_onnx_export_and_predict_backend_flags(
    fm, fm_top1, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inceptionnet import cli

    model, x, _ = fm
    out = tmp_path / "fm8.onnx"
    argv = ["export", "googlenet_small", "--weights", "fashion_mnist", "--int8", "--calibration",
            "fashion_mnist:train", "--calibration-size", "64", "-o", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "quantized to int8 (ONNX Runtime static QDQ" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
    assert _agreement(lambda t: got, fm_top1, x) >= 0.96
    assert (
        cli.main(["export", "googlenet_small", "--weights", "fashion_mnist", "--int8", "-o", str(out)]) == 2
    )
    assert "--int8 needs --calibration" in capsys.readouterr().err
    # eval through the fast path: the accuracy a user gets from it
    argv = ["eval", "--model", "googlenet_small", "--weights", "fashion_mnist", "--limit", "200", "--json",
            "--no-progress", "--backend", "onnxruntime", "--dtype", "int8"]  # fmt: skip
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "fast path: onnxruntime qint8" in captured.err
    assert json.loads(captured.out)["acc1"] > 0.85
    assert (
        cli.main(["eval", "--model", "googlenet_small", "--weights", "fashion_mnist", "--dtype", "int8"]) == 2
    )
    assert "--dtype int8 needs --backend" in capsys.readouterr().err


def test_cli_without_openvino_is_one_error_line(monkeypatch, tmp_path, capsys) -> None:
    from inceptionnet import cli

    monkeypatch.setitem(sys.modules, "openvino", None)
    out = tmp_path / "m.xml"
    assert cli.main(["export", "googlenet_small", "--num-classes", "10", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --format openvino: the openvino backend needs openvino") and "\n" not in err
    assert not out.exists()
