"""Session fixtures for every test folder (plain helpers: tests/helpers.py)."""

import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hypothesis import settings

# CI draws the same examples every run (a flaky red CI helps nobody); explore locally with
# HYPOTHESIS_PROFILE=explore pytest tests/cli/test_reliability.py --hypothesis-seed=N
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("INCEPTIONNET_NO_PROGRESS", "1")
os.environ.setdefault("INCEPTIONNET_NO_DOWNLOAD", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    _reset_sigchld()


def _reset_sigchld() -> None:
    """After each test: torch's DataLoader installs a process-wide SIGCHLD handler once (it raises in the
    main thread if a registered decoding worker died). Left in place, the exit of any later test's
    subprocess runs it at an arbitrary point of that test; suspected of the lost pytest-xdist workers
    ("node down: Not properly terminated") seen in full runs. Each test starts with the default."""
    import signal

    from torch.utils.data._utils import signal_handling

    if signal_handling._SIGCHLD_handler_set:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal_handling._SIGCHLD_handler_set = False


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str, make) -> Path:
    """``make(path)`` run once per session, shared by the pytest-xdist workers (a FileLock in the
    session's common temp folder; the first worker builds it, the others wait and reuse it)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if base.name.startswith("popen-gw") else base
    out, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one trained tiny checkpoint, READ ONLY (copy it to change it): helpers.TINY for 2 epochs on
    digits with plots and TensorBoard on and --save-format safetensors. checkpoint.pt, best.pt,
    best.safetensors, metrics.csv, args.yaml, curves.png, confusion.png, results.json, tb/."""
    from helpers import TINY
    from inceptionnet.cli import main as cli

    def make(out: Path) -> None:
        argv = [a for a in TINY if a not in ("--no-plots", "--no-tensorboard")]
        assert (
            cli(["train", *argv, "--epochs", "2", "--save-format", "safetensors", "--output-dir", str(out)])
            == 0
        )

    return shared_dir(tmp_path_factory, "trained_run", make)


@pytest.fixture(scope="session")
def fault_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The final weights of the uninterrupted fault run (helpers.TINY + FAULT_RUN): a killed or
    SIGTERMed run, resumed, must end with exactly these."""
    from helpers import FAULT_RUN, TINY
    from inceptionnet.cli import main as cli

    def make(out: Path) -> None:
        assert cli(["train", *TINY, *FAULT_RUN, "--output-dir", str(out)]) == 0

    out = shared_dir(tmp_path_factory, "fault_reference", make)
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


@pytest.fixture(scope="session")
def fid_weights_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """helpers.random_fid_state_dict() saved once per session in pytorch-fid's layout (torch-fidelity's
    FeatureExtractorInceptionV3 loads the same keys strictly): pt_inception-random.pth."""
    from helpers import random_fid_state_dict

    def make(out: Path) -> None:
        torch.save(random_fid_state_dict(), out / "pt_inception-random.pth")

    return str(shared_dir(tmp_path_factory, "fid_weights", make) / "pt_inception-random.pth")


@pytest.fixture
def small_gemm_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench's GEMM ceilings (peak_gflops) measured on 256^3 instead of 2048^3 matrices: the same code,
    seconds instead of minutes (an int8 GEMM without native int8 support took ~5 min per bench run)."""
    from functools import partial

    from inceptionnet import bench

    monkeypatch.setattr(bench, "gemm_peak_gflops", partial(bench.gemm_peak_gflops, n=256))
