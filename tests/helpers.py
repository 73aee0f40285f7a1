"""What the test folders share (``from helpers import ...``: pyproject's ``pythonpath`` puts tests/ on
sys.path). Fixtures live in conftest.py; plain values and functions live here."""

from __future__ import annotations

import pytest
import torch

from inceptionnet import list_models

# The one tiny training argv (googlenet_small at width 0.125 on sklearn's digits); add --epochs,
# --subset, --output-dir and the flag under test. tests/conftest.py's `trained_run` is TINY for 2 epochs.
TINY = ["--dataset", "digits", "--model", "googlenet_small", "--model-kwargs", "width=0.125",
        "--batch-size", "32", "--opt", "adamw", "--lr", "0.003", "--weight-decay", "0.0001",
        "--no-progress", "--no-plots", "--no-tensorboard"]  # fmt: skip
SMALL = {"num_classes": 10, "in_chans": 1, "width": 0.125}  # create_model kwargs of the model TINY trains

ALL_MODELS = list_models()
# The ImageNet-sized models: slow at any size on 2 cores, so tested at model.min_input_size and marked
# `slow` (still part of make test). The GoogLeNets are the small configs (32x32 inputs work).
BIG_MODELS = frozenset(
    {
        "bn_inception",
        "fid_inception_v3",
        "inception_v3",
        "inception_v4",
        "inception_resnet_v1",
        "inception_resnet_v2",
    }
)
SMALL_MODELS = [n for n in ALL_MODELS if n not in BIG_MODELS]


def model_params(names: list[str] | None = None) -> list[object]:
    """``names`` (default: every registered model) as parametrize values, the big ones marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG_MODELS else n for n in names or ALL_MODELS]


def one_error_line(err: str, *needles: str) -> str:
    """stderr is exactly one ``error: ...`` line holding every needle, with no traceback; the line."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def reference_inception() -> torch.nn.Module:
    """pytorch-fid's fid_inception_v3() topology with random weights (no download)."""
    pfi = pytest.importorskip("pytorch_fid.inception")
    t = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    t.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    t.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    t.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    t.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    t.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    t.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    t.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    t.Mixed_7b = pfi.FIDInceptionE_1(1280)
    t.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return t.eval()


def random_fid_state_dict() -> dict[str, torch.Tensor]:
    """Random weights (PyTorch's default init) with each BN's running statistics set from one batch
    of synthetic 299x299 images: without that, the default init shrinks the signal layer by layer and
    the pool3 features of any two images agree to 1e-8 (IS exactly 1, KID 0: nothing to compare)."""
    torch.manual_seed(0)
    net = reference_inception()
    yy, xx = torch.meshgrid(torch.arange(299.0), torch.arange(299.0), indexing="ij")
    x = torch.stack([torch.sin(xx / (9 + 4 * i)) * torch.cos(yy / (7 + 3 * i)) for i in range(8)])
    x = (x[:, None] + 0.3 * torch.randn(8, 3, 299, 299)).clamp(-1, 1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative: the running statistics become this batch's
    with torch.no_grad():
        net.train()(x)
    return net.eval().state_dict()
