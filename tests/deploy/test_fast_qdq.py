"""The fast path's OpenVINO int8 candidate takes the route ``export --format openvino --int8`` takes
(issue 34): ORT's static QDQ graph of the BN-folded file, run by OpenVINO in int8, never NNCF; the
>= 99 % top-1 agreement check kept (``auto`` drops it only with an ``AgreementError``)."""

from __future__ import annotations

import pytest
import torch

import inceptionnet
from inceptionnet.deploy import openvino as OV
from inceptionnet.deploy import quant
from inceptionnet.deploy.backends import REGISTRY
from inceptionnet.deploy.fast import AgreementError, optimize_for_inference

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(
    not OV.available(), reason="openvino not installed (pip install '.[openvino]')"
)


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, torch.Tensor]:
    """googlenet_small, width 0.125, 1 x 32 x 32 (random weights) and 32 smooth calibration images."""
    torch.manual_seed(0)
    model = inceptionnet.create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125).eval()
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    x = torch.stack([torch.sin(xx / (2 + i % 5) + i) * torch.cos(yy / (3 + i % 7)) for i in range(32)])
    return model, x[:, None].contiguous()


def test_record_names_the_graph_of_each_dtype() -> None:
    rec = REGISTRY["openvino"]
    assert rec.graph_for("int8") == "folded" == REGISTRY["onnxruntime"].graph_for("int8")
    assert rec.graph_for("float32") == rec.graph_for("bfloat16") == "merged"


@pytest.fixture
def qdq(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of calibration images of each ``quant.quantize_onnx_qdq`` call, which still runs."""
    calls: list[int] = []
    real = quant.quantize_onnx_qdq

    def spy(src, dst, images, *a, **kw):
        calls.append(len(images))
        return real(src, dst, images, *a, **kw)

    monkeypatch.setattr(quant, "quantize_onnx_qdq", spy)
    return calls


def test_openvino_int8_is_the_qdq_graph_with_its_check(tiny, qdq, monkeypatch: pytest.MonkeyPatch) -> None:
    """One build under ``auto`` (the >= 99 % check applies): ORT's QDQ quantizer ran, NNCF did not;
    the candidate was kept (BN-folded graph, int8, agreeing) or dropped only for its agreement."""
    model, x = tiny

    def no_nncf(*a, **kw):
        raise AssertionError("NNCF must not run for the fast path's openvino int8")

    monkeypatch.setattr(OV, "quantize", no_nncf)
    fast = optimize_for_inference(
        model, x[:8], dtype="auto", candidates=["openvino-int8", "eager"], calibration=x, auto_iters=1
    )
    assert qdq == [32]
    t = fast.timings["openvino-int8"]
    assert isinstance(t, float) or str(t).startswith("dropped: "), t  # built; or refused for agreement
    if fast.backend == "openvino":
        assert fast.dtype == torch.qint8 and fast.merged_convs == 0  # the BN-folded graph, as ORT's int8
        assert fast.top1_agreement >= 0.99 and fast(x[:3]).shape == (3, 10)


def test_a_disagreeing_int8_is_refused_with_agreement_error(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = tiny
    monkeypatch.setattr(quant, "quantize_onnx_qdq", _scrambled)
    with pytest.raises(AgreementError, match="top-1 agreement with eager fp32"):
        optimize_for_inference(  # on 16 images: the fewest an agreement is claimed on
            model, x[:8], backend="openvino", dtype="int8", calibration=x[:16], min_top1_agreement=0.99
        )


def _scrambled(src, dst, images, *a, **kw) -> None:
    """An "int8" file whose classes are reversed: the fp32 graph with its logits flipped."""
    import onnx
    from onnx import helper

    m = onnx.load(str(src))
    out = m.graph.output[0].name
    for node in m.graph.node:
        node.output[:] = [o + "_pre" if o == out else o for o in node.output]
    axes = helper.make_tensor("flip_axes", onnx.TensorProto.INT64, [1], [1])
    starts = helper.make_tensor("flip_starts", onnx.TensorProto.INT64, [1], [-1])
    ends = helper.make_tensor("flip_ends", onnx.TensorProto.INT64, [1], [-(2**62)])
    steps = helper.make_tensor("flip_steps", onnx.TensorProto.INT64, [1], [-1])
    m.graph.initializer.extend([axes, starts, ends, steps])
    m.graph.node.append(
        helper.make_node(
            "Slice", [out + "_pre", "flip_starts", "flip_ends", "flip_axes", "flip_steps"], [out]
        )
    )
    onnx.save(m, str(dst))


def test_auto_quantizes_once_for_both_engines_and_can_prefer_low_precision(tiny, qdq) -> None:
    """``auto`` makes the QDQ graph once for onnxruntime-int8 and openvino-int8 (the same file); with
    ``prefer_low_precision`` candidates go from the fewest bits up and those of more bits than a
    passing one are not built (bf16, fp32 after a passing int8)."""
    model, x = tiny
    fast = optimize_for_inference(
        model, x[:8], dtype="auto", candidates=["eager", "eager-bf16", "onnxruntime-int8", "openvino-int8"],
        calibration=x, auto_iters=1, prefer_low_precision=True,
    )  # fmt: skip
    assert qdq == [32]
    assert list(fast.timings) == ["onnxruntime-int8", "openvino-int8", "eager-bf16", "eager"]
    passed = [k for k in ("onnxruntime-int8", "openvino-int8") if isinstance(fast.timings[k], float)]
    if passed:
        for more_bits in ("eager-bf16", "eager"):
            assert str(fast.timings[more_bits]).startswith("skipped: "), fast.timings
        assert str(fast.dtype) == "torch.qint8"
    elif isinstance(fast.timings["eager-bf16"], float):  # no int8 agreed, bf16 did
        assert str(fast.timings["eager"]).startswith("skipped: ") and fast.dtype == torch.bfloat16
    else:  # none of lower precision agreed: the fp32 candidate was built and timed
        assert isinstance(fast.timings["eager"], float) and fast.backend == "eager"


def test_first_calibration_images_as_example_share_their_reference() -> None:
    """The example batch taken from the calibration images: the reference model runs on the
    calibration images only (their outputs serve the example too); another example costs a pass."""
    from helpers import micro_model
    from inceptionnet.deploy import fast as F

    model = micro_model()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(len(inp[0])))  # copied with the model
    torch.manual_seed(0)
    x = torch.randn(24, 1, 16, 16)
    shared = F._Builder(model, x[:8].clone(), x, 256, None, True)
    assert sum(seen) == 24
    seen.clear()
    own = F._Builder(model, torch.randn(8, 1, 16, 16), x, 256, None, True)
    assert sum(seen) == 24 + 8
    with torch.no_grad():
        assert torch.allclose(shared.ref, model(x[:8]), atol=1e-5)
        assert torch.allclose(own.calib_ref, model(x), atol=1e-5)
