"""What the test folders share (``from helpers import ...``: pyproject's ``pythonpath`` puts tests/ on
sys.path). Fixtures live in conftest.py; plain values and functions live here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# The fault runs (tests/cli/test_reliability.py, tests/train/test_train.py): 4 steps an epoch, one
# thread (the same float order), resumed runs must equal conftest's `fault_reference` bit for bit.
FAULT_RUN = ["--epochs", "2", "--subset", "128", "--threads", "1"]

# Runs `inceptionnet train`; at the HOOK_AT-th training step (HOOK_MODE=step) or torch.save call
# (HOOK_MODE=save, after writing half the temp file) writes the READY file and hangs until killed;
# HOOK_MODE=term sends the process SIGTERM at the HOOK_AT-th training step and goes on (the trainer
# finishes that step, saves and exits 143): a signal at a known step, however fast the machine.
# HOOK_MODE=build_term sends it inside trainer.build_run (run dir claimed, before the epochs; HOOK_AT
# unused), after checking rundir.on_sigterm is installed. A run that ends (returns or raises
# SystemExit) prints "sigterm handler restored: True|False" on stderr and exits with the run's code.
TRAIN_HOOK = """
import os, signal, sys, time
import torch
import inceptionnet.train.engine as engine

mode, at, ready = os.environ["HOOK_MODE"], int(os.environ["HOOK_AT"]), os.environ["READY"]
calls = [0]

def hang():
    open(ready, "w").close()
    time.sleep(600)

if mode in ("step", "term"):
    real_loss = engine.compute_loss
    def compute_loss(*a, **k):
        calls[0] += 1
        if calls[0] == at and mode == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        elif calls[0] == at:
            hang()
        return real_loss(*a, **k)
    engine.compute_loss = compute_loss
else:
    real_save = torch.save
    def save(obj, f, *a, **k):
        calls[0] += 1
        real_save(obj, f, *a, **k)
        if calls[0] == at:
            data = open(f, "rb").read()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
            hang()
    torch.save = save

if mode == "build_term":
    import inceptionnet.train.trainer as trainer
    from inceptionnet.train import rundir
    real_build = trainer.build_run
    def build_run(*a, **k):
        assert signal.getsignal(signal.SIGTERM) is rundir.on_sigterm, "build_run: on_sigterm not installed"
        os.kill(os.getpid(), signal.SIGTERM)
        return real_build(*a, **k)
    trainer.build_run = build_run

from inceptionnet.train import cli
before = signal.getsignal(signal.SIGTERM)
try:
    code = cli(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(f"sigterm handler restored: {signal.getsignal(signal.SIGTERM) is before}", file=sys.stderr)
sys.exit(code)
"""


def start_hooked_train(
    tmp_path: Path, mode: str, at: int, args: Sequence[str] = FAULT_RUN, name: str = "run"
) -> tuple[subprocess.Popen[str], Path, Path]:
    """``inceptionnet train TINY args`` into tmp_path/name under TRAIN_HOOK; (process, run, READY)."""
    out, ready = tmp_path / name, tmp_path / "ready"
    script = tmp_path / "train_hook.py"
    script.write_text(TRAIN_HOOK)
    env = {**os.environ, "HOOK_MODE": mode, "HOOK_AT": str(at), "READY": str(ready)}
    proc = subprocess.Popen([sys.executable, str(script), *TINY, *args, "--output-dir", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    return proc, out, ready


def micro_model(in_chans: int = 1, num_classes: int = 10) -> torch.nn.Module:
    """A few-layer CNN (conv, BN, ReLU, pools, linear; random weights, seed 0) for the machinery tests
    of exported files, where the path does not depend on the architecture (export time grows with the
    graph's nodes: a registry model costs tens of seconds per export on 2 cores, this a fraction)."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_chans, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes),
    ).eval()  # fmt: skip


def free_port() -> int:
    """A TCP port free on loopback now (for a torchrun rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_node_torchrun(
    module: str,
    args: Sequence[str],
    node_args: Sequence[Sequence[str]] = ((), ()),
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> list[tuple[str, str]]:
    """``python -m module args`` as two torchrun nodes on loopback, one process each (node ranks 0
    and 1, ``node_args[i]`` added to node i's command); asserts both exit 0; (stdout, stderr) per node."""
    port = str(free_port())
    procs = []
    for node, extra in enumerate(node_args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port,
               "-m", module, *args, *extra]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))  # fmt: skip
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return outs
