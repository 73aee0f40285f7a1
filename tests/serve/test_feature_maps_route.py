"""The serve page's feature maps (issue 33 item 3): ``POST /v1/feature_maps`` returns the grid PNG of
``analysis.feature_maps`` for one upload and a ``layer``; ``GET /v1/feature_maps/layers`` lists the
names; an unknown layer, a non-image and a too-large image are one clear 4xx JSON error each (the
upload and size checks of /v1/explain)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet import data as D

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from inceptionnet.serve.app import ServeConfig, create_app  # noqa: E402
from inceptionnet.serve.engine import Engine  # noqa: E402

CFG = ServeConfig(max_batch=2, max_wait_ms=1, timeout_s=20, max_body_bytes=2**20, max_files=2)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125).eval()


@pytest.fixture(scope="module")
def client(model: torch.nn.Module) -> Any:
    icfg = D.InputConfig(32, 1, (0.5,), (0.5,))
    engine = Engine(
        "googlenet_small", "random", icfg, [str(i) for i in range(10)], run=model, backend="eager",
        dtype="fp32", model=model, max_pixels=200_000,
    )  # fmt: skip
    with TestClient(create_app(engine, CFG)) as c:
        yield c


def png(size: tuple[int, int]) -> bytes:
    a = np.zeros(size[::-1], np.uint8)
    a[4:-4, 6:-6] = 200
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _shape(model: torch.nn.Module, layer: str) -> tuple[int, int, int]:
    """The layer's output C x H x W on a 32 x 32 input, found apart from the code under test."""
    seen: list[torch.Size] = []
    h = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: seen.append(o.shape))
    with torch.no_grad():
        model(torch.zeros(1, 1, 32, 32))
    h.remove()
    return tuple(seen[0][1:])  # type: ignore[return-value]


def test_layers_are_listed_with_a_default(client: Any, model: torch.nn.Module) -> None:
    r = client.get("/v1/feature_maps/layers")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layers"] == list(model.layer_names) and "inception3a" in body["layers"]
    assert body["default"] == "inception4c"


@pytest.mark.parametrize("layer", ["conv1", "inception3a"])
def test_grid_png_has_one_tile_per_channel(client: Any, model: torch.nn.Module, layer: str) -> None:
    r = client.post("/v1/feature_maps", files={"file": ("a.png", png((40, 36)))}, data={"layer": layer})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    c, h, w = _shape(model, layer)
    assert r.headers["x-feature-maps-shape"] == f"{c} x {h} x {w}"
    pic = Image.open(io.BytesIO(r.content))
    nrow = math.ceil(math.sqrt(c))
    rows = math.ceil(c / nrow)
    assert pic.mode == "L" and pic.size == (nrow * (w + 1) + 1, rows * (h + 1) + 1)
    a = np.asarray(pic)
    assert a[0].min() == 255 and a[:, 0].min() == 255  # the white frame between tiles
    assert a.min() == 0  # each channel scaled to its own range: some tile reaches black


def test_bad_layer_and_bad_uploads_are_clear_4xx(client: Any) -> None:
    cases = [
        ({"files": {"file": ("a.png", png((32, 32)))}, "data": {"layer": "inception9z"}}, 400,
         "'inception9z' is not a layer"),
        ({"files": {"file": ("a.png", png((32, 32)))}}, 400, "no layer given"),
        ({"files": {"file": ("a.png", b"not an image at all")}, "data": {"layer": "conv1"}}, 400, "a.png"),
        ({"files": {"file": ("big.png", png((600, 600)))}, "data": {"layer": "conv1"}}, 413, "pixels"),
        ({"files": [("file", ("a.png", png((32, 32)))), ("file", ("b.png", png((32, 32))))],
          "data": {"layer": "conv1"}}, 400, "one image"),
    ]  # fmt: skip
    for kwargs, status, words in cases:
        r = client.post("/v1/feature_maps", **kwargs)
        assert r.status_code == status, (words, r.text)
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert words in error and "\n" not in error, (words, error)
    assert "conv1" in client.post("/v1/feature_maps", **cases[0][0]).json()["error"]  # names valid ones
    ok = client.post("/v1/feature_maps", files={"file": ("a.png", png((32, 32)))}, data={"layer": "conv1"})
    assert ok.status_code == 200  # the server still answers
