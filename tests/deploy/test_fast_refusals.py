"""The fast path refuses what the eager model refuses (same check, same message) plus non-finite
inputs; int8 calibration and every top-1 agreement claim need floats and enough images
(issue 35, "wrong with exit 0": a uint8 batch computed on, uint8 calibration, agreement on 2 images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import inceptionnet
from inceptionnet.cli import main as cli_main
from inceptionnet.deploy.export import check_int8_agreement
from inceptionnet.deploy.fast import optimize_for_inference
from inceptionnet.deploy.quant import calibration_images
from inceptionnet.deploy.verify import MIN_AGREEMENT_IMAGES
from inceptionnet.errors import (
    AgreementError,
    ExportError,
    InputShapeError,
    NonFiniteError,
    UsageError,
)

SIZE = 32


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    # googlenet (not googlenet_small): its minimum input size (15) makes "too small" refusable; at
    # width 0.125 (the checks are on inputs, not on the weights)
    return inceptionnet.create_model("googlenet", num_classes=10, in_chans=1, width=0.125).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=["eager", "onnxruntime"])
def fast(request: pytest.FixtureRequest, model: torch.nn.Module, x: torch.Tensor):  # noqa: ANN201
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
    return optimize_for_inference(model, x, backend=request.param)


BAD_INPUTS = {
    "uint8": lambda x: (x.clamp(0, 1) * 255).to(torch.uint8),
    "int64": lambda x: x.long(),
    "bool": lambda x: x > 0,
    "3-D": lambda x: x[0],
    "5-D": lambda x: x[None],
    "3 channels": lambda x: x.expand(-1, 3, -1, -1),
    "too small": lambda x: x[..., :4, :4],
    "a list": lambda x: x.tolist(),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_fast_path_refuses_what_eager_refuses(fast, model, x, case: str) -> None:
    bad = BAD_INPUTS[case](x)
    with pytest.raises(InputShapeError) as eager_err:
        model(bad)
    with pytest.raises(InputShapeError) as fast_err:
        fast(bad)
    assert str(fast_err.value) == str(eager_err.value)  # one check, one message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_fast_path_refuses_non_finite_inputs(fast, x, value: float) -> None:
    bad = x.clone()
    bad[0, 0, 3, 3] = value
    with pytest.raises(NonFiniteError, match="NaN or infinity"):
        fast(bad)
    assert fast(x).shape == (2, 10)  # good input still answers ...
    assert torch.allclose(fast(x.double()), fast(x), atol=1e-5)  # ... other float dtypes cast as before


def test_all_finite_is_the_element_wise_check_by_one_sum() -> None:
    """The fast path's per-batch check: True exactly when every element is finite, including finite
    values whose sum overflows (the element-wise fallback) and half-precision inputs."""
    from inceptionnet.runtime import all_finite

    x = torch.randn(4, 3, 8, 8)
    assert all_finite(x) and all_finite(x.half()) and all_finite(x.bfloat16()) and all_finite(x.double())
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = x.clone()
        bad[3, 2, 7, 7] = value
        assert not all_finite(bad) and not all_finite(bad.half())
    huge = torch.full((8,), 3e38)  # finite, but their sum overflows float32
    assert all_finite(huge) and all_finite(torch.full((8,), 60000.0).half())  # fp16 sum over 65504
    both = torch.tensor([float("inf"), float("-inf")])  # a sum of NaN, not inf
    assert not all_finite(both) and all_finite(torch.randint(0, 255, (4, 4), dtype=torch.uint8))


def test_calibration_refuses_non_float_images(model, x) -> None:
    u8 = torch.randint(0, 256, (32, 1, SIZE, SIZE), dtype=torch.uint8)
    with pytest.raises(UsageError, match="float tensors.*got uint8"):
        calibration_images(u8, model, x, 256)
    with pytest.raises(UsageError, match="float tensors"):  # the one int8 case: refused before any build
        optimize_for_inference(model, x, backend="onnxruntime", dtype="int8", calibration=u8)


def test_calibration_needs_a_minimum_count(model, x) -> None:
    few = torch.randn(MIN_AGREEMENT_IMAGES - 1, 1, SIZE, SIZE)
    with pytest.raises(UsageError, match=f"15 images are too few.*at least {MIN_AGREEMENT_IMAGES}"):
        calibration_images(few, model, x, 256)
    with pytest.raises(UsageError, match="calibration_size \\(--calibration-size\\) is 2"):
        calibration_images(torch.randn(64, 1, SIZE, SIZE), model, x, 2)
    enough = calibration_images(torch.randn(MIN_AGREEMENT_IMAGES, 1, SIZE, SIZE), model, x, 256)
    assert enough.shape[0] == MIN_AGREEMENT_IMAGES


def test_agreement_is_never_claimed_on_a_handful(model, x) -> None:
    # bf16 held to a top-1 bar on a 2-image example (no calibration images): nothing to claim
    with pytest.raises(AgreementError, match="2 images are too few to claim a top-1 agreement"):
        optimize_for_inference(model, x, backend="eager", dtype=torch.bfloat16, min_top1_agreement=0.5)
    # the export's int8 check (library use with a tensor of calibration images)
    with pytest.raises(ExportError, match="2 images are too few"):
        check_int8_agreement(model, x, model, "int8 ONNX file")


def test_export_int8_with_two_calibration_images_is_one_error_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    argv = ["export", "googlenet", "--in-chans", "1", "--num-classes", "10", "--input-size", "32", "32",
            "--int8", "--calibration", "fashion_mnist:train", "--calibration-size", "2", "-o", str(out)]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--calibration-size" in err[0], err
    assert not out.exists()
