"""FID's Tr sqrt(S1 S2) from a symmetric eigendecomposition: equal to scipy's ``sqrtm`` (pytorch-fid)
where that is well behaved, finite and right where it returns NaN or a complex matrix (checked
against a 50-digit mpmath reference), and pytorch-fid's own number for fewer images than dims + 1
with ``--allow-rank-deficient`` (issue 32, items 2 and 5). Statistics are made here: no network."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

from inceptionnet.errors import UsageError
from inceptionnet.metrics import scores as M

pfs = pytest.importorskip("pytorch_fid.fid_score")
linalg = pytest.importorskip("scipy.linalg")

# S1 = x x^T (rank 1) and S2 = Y^T Y (rank 5) in 6 dims, integer entries: exact in float64, S1 S2 singular
X1 = np.array([-2.0, 3.0, 2.0, 2.0, 0.0, -2.0])
Y2 = np.array(
    [
        [-3, -3, 1, 0, 0, -2],
        [3, 2, 2, -3, -3, -2],
        [-1, -3, 3, 0, 3, 2],
        [-2, -2, 3, 1, -3, 2],
        [-3, 0, -1, 0, -1, 1],
    ],
    dtype=np.float64,
)


def pytorch_fid(*stats: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance (it prints when it adds eps; scipy warns of disp)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pfs.calculate_frechet_distance(*stats))


def stats(seed: int, n: int, d: int = 64, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    f = rng.randn(n, d) * np.linspace(0.5, 2.0, d) * scale + 0.1 * seed
    return M.stats_of(f) if n > d else (f.mean(0), np.cov(f, rowvar=False))


def mp_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr sqrt(S1 S2) in 50 digits: sqrt(S1) S2 sqrt(S1) by mpmath's symmetric eigensolver. (mp.sqrtm
    of S1 S2 itself does not converge on a singular or near-singular product: ZeroDivisionError /
    NoConvergence at dps 50 and 100.)"""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 50
    e, q = mp.eigsy(mp.matrix(s1.tolist()))
    root = q * mp.diag([mp.sqrt(max(v, 0)) for v in e]) * q.T
    m = root * mp.matrix(s2.tolist()) * root
    e2, _ = mp.eigsy((m + m.T) / 2)
    return float(sum(mp.sqrt(max(v, 0)) for v in e2))


def test_equal_to_scipy_where_scipy_is_well_behaved() -> None:
    for seed in range(3):
        s1, s2 = stats(seed, 400), stats(seed + 10, 400, scale=1.3)
        ref = pytorch_fid(*s1, *s2)
        ours = M.frechet_distance(*s1, *s2)
        assert ours == pytest.approx(ref, rel=1e-6, abs=0), seed  # measured: ~1e-13
        assert M.frechet_distance(*s1, *s2, method="pytorch-fid") == ref
        sq = linalg.sqrtm(s1[1] @ s2[1])
        assert M.trace_sqrt_product(s1[1], s2[1]) == pytest.approx(np.trace(sq).real, rel=1e-9)


def sqrtm_fails(sq: np.ndarray) -> bool:
    """scipy's ``sqrtm`` did not return the real square root: NaN, or a complex matrix with
    imaginary parts beyond rounding (which of the two depends on the CPU: LAPACK's code paths)."""
    return not np.isfinite(sq).all() or (np.iscomplexobj(sq) and np.abs(sq.imag).max() > 1e-9)


def test_singular_product_where_sqrtm_gives_nan_or_complex() -> None:
    s1, s2 = np.outer(X1, X1), Y2.T @ Y2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq = linalg.sqrtm(s1 @ s2)
    # scipy 1.17 on the same input, by CPU: all NaN on AMD Zen 3 (AVX2); complex, imaginary parts up
    # to 5e-7, on Zen 4 (AVX-512). Either way not the real matrix square root.
    nan = not np.isfinite(sq).all()
    assert sqrtm_fails(sq)
    exact = float(np.sqrt(X1 @ s2 @ X1))  # S1 S2 has rank 1: its one eigenvalue x^T S2 x
    assert mp_trace_sqrt(s1, s2) == pytest.approx(exact, rel=1e-15)
    tr = M.trace_sqrt_product(s1, s2)
    assert np.isfinite(tr) and tr == pytest.approx(exact, rel=1e-6)  # measured 1.8e-8
    mu = np.zeros(6)
    want = float(np.trace(s1) + np.trace(s2) - 2 * exact)
    assert M.frechet_distance(mu, s1, mu, s2) == pytest.approx(want, rel=1e-8)
    if nan:  # pytorch-fid: NaN, then eps = 1e-6 on both diagonals: off by 2.6e-4 relative (148.397 vs 148.435)
        assert abs(pytorch_fid(mu, s1, mu, s2) - want) > 1e-4 * want


def test_near_singular_where_sqrtm_goes_complex() -> None:
    s1, s2 = np.outer(X1, X1) + 1e-15 * np.eye(6), Y2.T @ Y2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq = linalg.sqrtm(s1 @ s2)
    assert sqrtm_fails(sq)  # complex on AMD Zen 3 and Zen 4
    tr = M.trace_sqrt_product(s1, s2)
    assert isinstance(tr, float) and tr == pytest.approx(mp_trace_sqrt(s1, s2), rel=1e-6)
    # few samples in 64 dims: sqrtm fails (complex on Zen 3 and Zen 4); where it is complex and finite,
    # pytorch-fid keeps its real part, which ours equals
    (m1, c1), (m2, c2) = stats(0, 10), stats(1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq = linalg.sqrtm(c1 @ c2)
    assert sqrtm_fails(sq)
    if np.isfinite(sq).all():
        assert M.frechet_distance(m1, c1, m2, c2) == pytest.approx(pytorch_fid(m1, c1, m2, c2), rel=1e-6)


def test_pytorch_fid_method_equals_pytorch_fid_on_rank_deficient_stats() -> None:
    for n in (10, 20, 40):  # fewer than 64 + 1 samples
        s1, s2 = stats(n, n), stats(n + 1, n, scale=1.2)
        assert M.frechet_distance(*s1, *s2, method="pytorch-fid") == pytorch_fid(*s1, *s2)
    # where sqrtm is NaN, pytorch-fid's eps rule, to the last bit
    mu, s1, s2 = np.zeros(6), np.outer(X1, X1), Y2.T @ Y2
    assert M.frechet_distance(mu, s1, mu, s2, method="pytorch-fid") == pytorch_fid(mu, s1, mu, s2)
    with pytest.raises(UsageError, match="FID method 'scipy'"):
        M.frechet_distance(mu, s1, mu, s2, method="scipy")


def write_folder(path, seed: int, noise: float, n: int) -> str:
    from PIL import Image

    path.mkdir()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        base = (np.sin(xx / (3 + i % 5)) + np.cos(yy / (2 + i % 7))) * 60 + 128
        img = base[..., None] + rng.randn(32, 32, 3) * noise
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")
    return str(path)


def test_cli_allow_rank_deficient_gives_pytorch_fids_number(fid_weights_file, tmp_path, capsys) -> None:
    import json

    from inceptionnet.commands import run

    # 10 and 12 images (as few as the statistics tests above use): each is an eager 299x299 pass, twice
    a, b = write_folder(tmp_path / "a", 0, 10.0, 10), write_folder(tmp_path / "b", 1, 40.0, 12)
    common = ["--weights", fid_weights_file, "--dims", "64", "--device", "cpu", "--backend", "eager"]
    assert run("fid", [a, b, *common]) == 2
    assert "10 images give a rank-deficient 64x64 covariance" in capsys.readouterr().err
    assert run("fid", [a, b, *common, "--allow-rank-deficient", "--json"]) == 0
    cap = capsys.readouterr()
    value = json.loads(cap.out)["fid"]
    warn = cap.err.strip().splitlines()
    assert len(warn) == 1 and warn[0].startswith("warning: FID of 10 images") and "12 images" in warn[0]
    assert "biased" in warn[0] and "docs/METRICS.md" in warn[0]
    net = M.load_fid_model(fid_weights_file)
    fa, fb = (M.folder_features(x, net, dims=64, backend="eager", show_progress=False) for x in (a, b))
    stats = [(f.features.mean(0), np.cov(f.features, rowvar=False)) for f in (fa, fb)]
    assert value == pytorch_fid(*stats[0], *stats[1])  # the same features, pytorch-fid's function
