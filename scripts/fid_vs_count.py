"""How FID moves with the image count: FID between two disjoint random subsets of ONE feature set (so
the true FID is 0 and every number printed is bias + noise), at counts 50 .. N/2, a table of mean, std,
min and max over repeats (docs/METRICS.md, issue 32 item 5).

    python scripts/fid_vs_count.py REFERENCE.npz [--counts 50,100,200,...] [--repeats 5]
    python scripts/fid_vs_count.py --quick        # synthetic 64-d features, well under a minute

REFERENCE.npz: a saved reference that keeps its features (``inceptionnet fid FOLDER --save-stats
ref.npz``); its features are split, no network runs. Without one: synthetic Gaussian features
(``--synthetic-dims`` wide, ``--synthetic-n`` rows, eigenvalues falling as 1/k like real Inception
features'). Counts below dims + 1 give rank-deficient covariances: computed as pytorch-fid computes
them (``method="pytorch-fid"``, its sqrtm and eps rule), marked in the table; the rest with ``eigh``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from inceptionnet.errors import UsageError
from inceptionnet.metrics.scores import frechet_distance, load_reference, stats_of

QUICK = {"synthetic_dims": 64, "synthetic_n": 2000, "counts": "50,100,200,500,1000", "repeats": 3}


def synthetic(dims: int, n: int, seed: int) -> np.ndarray:
    """n x dims Gaussian rows, covariance with eigenvalues 1/k in a random basis."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    scale = 1.0 / np.sqrt(np.arange(1, dims + 1))
    return (rng.normal(size=(n, dims)) * scale) @ basis.T + rng.normal(size=dims)


def split_fid(features: np.ndarray, count: int, rng: np.random.Generator) -> tuple[float, str]:
    """FID of two disjoint random subsets of ``count`` rows each; the method used."""
    order = rng.permutation(len(features))
    a, b = features[order[:count]], features[order[count : 2 * count]]
    method = "pytorch-fid" if count < features.shape[1] + 1 else "eigh"
    sa = stats_of(a, "subset a", allow_rank_deficient=True)
    sb = stats_of(b, "subset b", allow_rank_deficient=True)
    return frechet_distance(*sa, *sb, method=method), method


def table(features: np.ndarray, counts: list[int], repeats: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    n, d = features.shape
    lines = [f"{n} feature rows, {d} dims; FID of two disjoint subsets of COUNT rows each, {repeats} repeats",
             f"{'count':>7} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}  method"]  # fmt: skip
    for count in counts:
        if 2 * count > n:
            lines.append(f"{count:>7} skipped: two subsets need {2 * count} rows, the set has {n}")
            continue
        runs = [split_fid(features, count, rng) for _ in range(repeats)]
        v = np.array([f for f, _ in runs])
        lines.append(
            f"{count:>7} {v.mean():>10.4g} {v.std(ddof=1) if repeats > 1 else 0.0:>10.3g} "
            f"{v.min():>10.4g} {v.max():>10.4g}  {runs[0][1]}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reference", nargs="?", help="a saved reference .npz with features (else synthetic)")
    p.add_argument("--counts", default="50,100,200,500,1000,2000,5000", help="comma-separated counts")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-dims", type=int, default=2048)
    p.add_argument("--synthetic-n", type=int, default=10000)
    p.add_argument("--quick", action="store_true", help=f"synthetic, small: {QUICK}")
    args = p.parse_args(argv)
    if args.quick:
        if args.reference:
            p.error("--quick runs on synthetic features: give no REFERENCE")
        vars(args).update(QUICK)
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    if not counts or counts[0] < 2 or args.repeats < 1:
        p.error("--counts must be integers >= 2 and --repeats at least 1")
    if args.reference:
        try:
            features = load_reference(args.reference).features_for("splitting a feature set")
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        features = synthetic(args.synthetic_dims, args.synthetic_n, args.seed)
    print("\n".join(table(features, counts, args.repeats, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
