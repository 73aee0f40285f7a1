"""Feature-map grids (issue 33 item 3): ``analysis.feature_maps`` gives one tile per channel of each
named layer, each channel scaled to [0, 1], leaving the model as it was; ``inceptionnet explain
--feature-maps`` writes the grid figure, and an unknown layer is one error line listing the names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import one_error_line
from inceptionnet import create_model
from inceptionnet.analysis.feature_maps import feature_layer_names, feature_maps, parse_layers
from inceptionnet.cli import main as cli
from inceptionnet.errors import UsageError

FM = ["--model", "googlenet_small", "--weights", "fashion_mnist"]  # the bundled weights: width 0.25, 28 px


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("googlenet_small", num_classes=10, in_chans=1, width=0.125).eval()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("fmaps") / "shape.png"
    a = np.zeros((28, 28), np.uint8)
    a[6:22, 8:20] = 220
    Image.fromarray(a).save(p)
    return p


def _channels(model: torch.nn.Module, x: torch.Tensor, layer: str) -> tuple[int, int, int]:
    """The layer's output C x H x W, found independently of the function under test."""
    seen: list[torch.Size] = []
    h = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: seen.append(o.shape))
    with torch.no_grad():
        model(x)
    h.remove()
    return tuple(seen[0][1:])  # type: ignore[return-value]


def test_one_tile_per_channel(small: torch.nn.Module) -> None:
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        before = small(x)
    layers = ["conv1", "inception3a", "inception4c"]
    out = feature_maps(small, x, layers)
    assert [r.layer for r in out] == layers
    for r in out:
        c, h, w = _channels(small, x, r.layer)
        assert r.maps.shape == (c, h, w)
        rows = math.ceil(c / r.nrow)
        assert r.grid.shape == (rows * (h + 1) + 1, r.nrow * (w + 1) + 1)  # c tiles, 1-px gaps
        assert r.maps.min() >= 0 and r.maps.max() <= 1
        live = r.maps.reshape(c, -1).max(1) > 0
        assert np.allclose(r.maps.reshape(c, -1)[live].max(1), 1.0)  # each channel scaled to its own range
    with torch.no_grad():
        assert torch.equal(small(x), before)  # the hooks are gone
    assert all(not m._forward_hooks for m in small.modules())


def test_layer_names_are_the_backbone_names(small: torch.nn.Module) -> None:
    names = feature_layer_names(small)
    assert names == small.layer_names
    assert {i["module"] for i in small.feature_info} <= set(names)
    assert parse_layers("inception3a, conv1,inception3a", small) == ["inception3a", "conv1"]
    with pytest.raises(UsageError, match=r"'inception9z' is not a layer of this model; choose from conv1, "):
        parse_layers("conv1,inception9z", small)
    with pytest.raises(UsageError, match="an empty layer name"):
        parse_layers("conv1,,conv3", small)


def test_explain_feature_maps_writes_the_grid(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "grid.png"
    rc = cli(["explain", str(image), *FM, "--feature-maps", "conv1,inception3b", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes().startswith(b"\x89PNG")
    said = capsys.readouterr().out
    assert "conv1 16x28x28" in said and "inception3b 120x28x28" in said, said


def test_explain_unknown_layer_is_one_line(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "grid.png"
    rc = cli(["explain", str(image), *FM, "--feature-maps", "conv1,inception9z", "-o", str(out)])
    assert rc == 2 and not out.exists()
    one_error_line(capsys.readouterr().err, "--feature-maps", "'inception9z'", "inception3a", "inception5b")
    rc = cli(
        ["explain", str(image), *FM, "--feature-maps", "conv1", "--block", "inception3a", "-o", str(out)]
    )
    assert rc == 2 and not out.exists()
    one_error_line(capsys.readouterr().err, "leave out --block and --target")
