"""``export --format openvino --uint8-input`` (issue 31): the IR takes uint8 N x H x W x C images and
OpenVINO's PrePostProcessor does the preprocessing (to f32, / 255, channel order, mean / std, layout);
checked against our Python preprocessing on real Fashion-MNIST images, and on a 3-channel BGR 0-255
model against ``pt2.Uint8Input`` (the wrapper the other formats use)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openvino")

import torch  # noqa: E402
from torch import nn  # noqa: E402

import inceptionnet  # noqa: E402
from inceptionnet import cli  # noqa: E402
from inceptionnet import data as D  # noqa: E402
from inceptionnet.checkpoint import ModelSource, open_model  # noqa: E402
from inceptionnet.deploy import export as E  # noqa: E402
from inceptionnet.deploy import openvino as OV  # noqa: E402
from inceptionnet.deploy import pt2, verify  # noqa: E402

N_IMAGES = 16  # real Fashion-MNIST test images


def _run_ir(xml: Path, u8: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model, meta = OV.load_ir(xml)
    return OV.Runner(OV.compile_model(model, "float32", 1))(u8), meta


def test_uint8_ir_matches_python_preprocessing(tmp_path: Path) -> None:
    x, _, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    images = x[:N_IMAGES]
    out = tmp_path / "u8.xml"
    argv = [
        "export",
        "googlenet_small",
        "--weights",
        "fashion_mnist",
        "--format",
        "openvino",
        "--uint8-input",
    ]
    assert cli.main([*argv, "-o", str(out)]) == 0
    model, icfg, _, _ = open_model(ModelSource.model("googlenet_small", "fashion_mnist"))
    prepared = torch.stack([D.eval_transform(icfg, 1, 28)(im[None]) for im in images])  # our Python path
    with torch.no_grad():
        want = model(prepared)
    got, meta = _run_ir(out, images[..., None].contiguous())  # N x H x W x C as a decoder gives them
    assert meta["input_dtype"] == "uint8" and meta["input_layout"] == "NHWC" and meta["format"] == "openvino"
    assert torch.equal(got.argmax(1), want.argmax(1))
    verify.check_close(got, want, "uint8 IR", atol=1e-4, rtol=1e-5)
    assert E.written_by_export(out, "openvino")


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def test_uint8_ir_bgr_0_255_matches_the_wrapper(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Tiny().eval()
    icfg = D.InputConfig(8, 3, (104.0, 117.0, 123.0), (58.0, 57.0, 57.5))  # Caffe-style: BGR, 0..255
    meta = E.build_metadata("tiny", icfg, (8, 8), 5, input_space="BGR", input_range=[0, 255])
    out = tmp_path / "bgr.xml"
    E.export_model(model, out, fmt="openvino", input_size=(8, 8), in_chans=3, metadata=meta, uint8_input=True)
    u8 = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    got, saved = _run_ir(out, u8)
    with torch.no_grad():
        want = pt2.Uint8Input.from_metadata(model, saved)(u8)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (icfg.mean, icfg.std))
        unflipped = model((u8.permute(0, 3, 1, 2).float() - mean) / std)
    verify.check_close(got, want, "BGR uint8 IR", atol=1e-4, rtol=1e-5)
    assert not torch.allclose(got, unflipped, atol=1e-3)  # the channel flip is really done
    assert inceptionnet.__version__ == saved["inceptionnet_version"]
