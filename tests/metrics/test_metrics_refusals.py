"""FID / IS / KID refuse what they cannot honour and never report NaN or a negative distance
(issue 35, "wrong with exit 0": `isc` printing "IS: nan ± nan", a sigma that is not a covariance giving
-256, a folder against itself -1.3e-9, `.npz` headers trusted). Feature arrays are made here: no
network runs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inceptionnet.commands import run
from inceptionnet.errors import NonFiniteError, UsageError
from inceptionnet.metrics import scores as M


def _stats(seed: int = 0, n: int = 80, d: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return M.stats_of(np.random.RandomState(seed).randn(n, d) * 3 + 1)


def test_fid_of_statistics_against_themselves_is_exactly_zero() -> None:
    mu, sigma = _stats()  # pytorch-fid's formula gives -3.4e-12 here (rounding)
    assert M.frechet_distance(mu, sigma, mu, sigma) == 0.0


def test_fid_refuses_a_sigma_that_is_not_a_covariance() -> None:
    mu, sigma = _stats()
    d = len(mu)
    asym = sigma.copy()
    asym[0, 1] += 0.5 * np.abs(sigma).max()
    with pytest.raises(UsageError, match="statistics 2: sigma is not a covariance: not symmetric"):
        M.frechet_distance(mu, sigma, mu, asym)
    with pytest.raises(UsageError, match="statistics 1: .* not positive semi-definite"):
        M.frechet_distance(mu, -sigma, mu, sigma)  # negative definite: pytorch-fid's formula gives < 0
    indefinite = np.eye(d)
    indefinite[0, 0] = -1.0
    with pytest.raises(UsageError, match="not positive semi-definite"):
        M.frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), indefinite)
    with pytest.raises(UsageError, match="not a D and a D x D"):
        M.frechet_distance(mu, sigma, mu[:3], sigma)
    # within the tolerances: a rank-deficient covariance stored in float32 is still one
    low = np.cov(np.random.RandomState(1).randn(20, 64), rowvar=False).astype(np.float32).astype(np.float64)
    M.check_covariance(low)


def test_inception_score_is_finite_or_an_error() -> None:
    spread = np.random.RandomState(0).randn(20, 1008) * 1e4  # softmax underflows to exact zeros
    mean, std = M.inception_score(spread, splits=2)
    assert np.isfinite(mean) and np.isfinite(std) and 1.0 <= mean <= 10.0 + 1e-9
    bad = np.random.RandomState(0).randn(20, 1008)
    bad[3, 7] = np.nan
    with pytest.raises(NonFiniteError, match="logits hold NaN or infinity"):
        M.inception_score(bad, splits=2)


def test_kid_refuses_non_finite_features_and_overflow() -> None:
    f = np.random.RandomState(0).randn(10, 4)
    bad = f.copy()
    bad[0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="KID features"):
        M.kernel_inception_distance(bad, f, subsets=2, subset_size=5)
    with pytest.raises(NonFiniteError, match="KID came out"):
        M.kernel_inception_distance(f * 1e80, f, subsets=2, subset_size=5)


@pytest.fixture
def fake_isc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201
    """`isc` on a folder of 20 named files whose logits the test chooses (no network, no decoding)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i:02d}.png").write_bytes(b"")
    logits: dict[str, np.ndarray] = {}

    def features(src, net, **kw):  # noqa: ANN001, ANN202, ARG001
        lg = logits["value"]
        return M.Features(
            np.zeros((len(lg), 2048)), lg, [str(folder / f"{i:02d}.png") for i in range(len(lg))]
        )

    monkeypatch.setattr("inceptionnet.commands.isc.fid_network", lambda args, device: None)
    monkeypatch.setattr(M, "folder_features", features)
    return str(folder), logits


def test_isc_never_prints_nan(fake_isc, capsys) -> None:
    folder, logits = fake_isc
    logits["value"] = np.random.RandomState(0).randn(20, 1008) * 1e4
    assert run("isc", [folder, "--splits", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # strict JSON: NaN would not parse as a number here
    assert np.isfinite(out["isc_mean"]) and np.isfinite(out["isc_std"])
    logits["value"] = np.full((20, 1008), np.nan)
    assert run("isc", [folder, "--splits", "2"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "NaN" in err[0], err
    assert "nan" not in cap.out


def _npz_with_headers(path: Path, mu_shape: tuple[int, ...], sigma_shape: tuple[int, ...]) -> Path:
    """An .npz whose members declare ``*_shape`` (and hold almost nothing)."""
    with zipfile.ZipFile(path, "w") as z:
        for key, shape in (("mu", mu_shape), ("sigma", sigma_shape)):
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                buf, {"descr": "<f8", "fortran_order": False, "shape": shape}
            )
            z.writestr(f"{key}.npy", buf.getvalue() + b"\0" * 64)
    return path


def _bad_npz(kind: str, path: Path) -> Path:
    mu, sigma = _stats()
    arrays = {
        "mismatch": dict(mu=np.zeros(64), sigma=np.eye(3)),
        "int dtype": dict(mu=np.zeros(64, np.int64), sigma=np.eye(64, dtype=np.int64)),
        "strings": dict(mu=np.array(["0.5"] * 64), sigma=sigma),
        "complex": dict(mu=mu.astype(complex), sigma=sigma),
        "nan": dict(mu=np.full(64, np.nan), sigma=sigma),
        "inf sigma": dict(mu=mu, sigma=np.where(np.eye(64) > 0, np.inf, 0.0)),
        "not symmetric": dict(mu=mu, sigma=np.triu(sigma)),
        "not psd": dict(mu=mu, sigma=-sigma),
        "other dims": dict(mu=np.zeros(192), sigma=np.eye(192)),
    }
    if kind == "huge header":
        return _npz_with_headers(path, (64,), (10**9, 10**9))
    if kind == "huge dims":
        return _npz_with_headers(path, (10**6,), (10**6, 10**6))
    np.savez(path, **arrays[kind])
    return path


NPZ_CASES = {
    "mismatch": "not a D and a D x D array",
    "int dtype": "mu is an array of 'int64', not of floats",
    "strings": "not of floats",
    "complex": "not of floats",
    "nan": "NaN or infinity",
    "inf sigma": "NaN or infinity",
    "not symmetric": "not symmetric",
    "not psd": "not positive semi-definite",
    "other dims": "192-d features, --dims is 64",
    "huge header": "not a D and a D x D array",
    "huge dims": "1000000-d features, --dims is 64",
}


@pytest.mark.parametrize("kind", list(NPZ_CASES))
def test_npz_statistics_are_checked_before_use(kind: str, tmp_path: Path, capsys) -> None:
    bad = _bad_npz(kind, tmp_path / "bad.npz")
    good = tmp_path / "good.npz"
    np.savez(good, **dict(zip(("mu", "sigma"), _stats())))
    with pytest.raises((UsageError, NonFiniteError), match=NPZ_CASES[kind]) as e:
        M.load_stats(bad, 64)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert run("fid", [str(good), str(bad), "--dims", "64"]) == 2  # two .npz: no network is opened
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(bad) in err[0], err
