"""``inceptionnet fid``: Fréchet Inception Distance between two image folders or saved references.

    inceptionnet fid real/ fake/ --weights pt_inception-2015-12-05-6726825d.pth
    inceptionnet fid real/ fake/ --weights ... --resize torch-fidelity --kid --kid-subset-size 100
    inceptionnet fid real/ --save-stats real.npz          # mu, sigma, the features, network sha256, resize
    inceptionnet fid real.npz fake/ --kid --prc --json     # every metric against a saved reference
    torchrun --nproc-per-node 2 -m inceptionnet.metrics fid real/ fake/ --weights ...

pytorch-fid's number: its network (``fid_inception_v3``), resize and statistics; ``--resize``
torch-fidelity / clean for those tools' input rules; ``--kid``: torch-fidelity's KID too;
``--prc``: precision / recall (torch-fidelity's) and density / coverage (the prdc package's), A
the real set and B the generated one; ``--allow-rank-deficient``: pytorch-fid's (biased) number
for fewer images than dims + 1 (docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from ..errors import UsageError
from ..runtime import resolve_device
from ._args import add_feature_args, feature_kwargs, fid_network, report_skipped, run_distributed


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from ..metrics.scores import DIMS

    p = argparse.ArgumentParser(
        description="FID between two image folders or .npz statistics files (pytorch-fid's numbers).",
        add_help=add_help,
    )
    p.add_argument(
        "paths", nargs="+", metavar="A B", help="two image folders or .npz files (one with --save-stats)"
    )
    p.add_argument("--dims", type=int, default=2048, choices=DIMS, help="feature taps (2048: pool3)")
    add_feature_args(p)
    p.add_argument(
        "--save-stats",
        default=None,
        metavar="OUT.npz",
        help="save the folder as a reference: mu, sigma, features, network sha256, resize",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--save-stats may replace an existing file (never a checkpoint or weights)",
    )
    p.add_argument("--kid", action="store_true", help="KID too (torch-fidelity's; needs two folders)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of random subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID: images per subset")
    p.add_argument(
        "--prc", action="store_true",
        help="precision / recall (torch-fidelity's) and density / coverage (prdc's) of B against A",
    )  # fmt: skip
    p.add_argument("--prc-k", type=int, default=3, help="precision / recall: k-th neighbour radius (3)")
    p.add_argument("--dc-k", type=int, default=5, help="density / coverage: k-th neighbour radius (5)")
    p.add_argument(
        "--allow-rank-deficient", action="store_true",
        help="fewer images than dims + 1: pytorch-fid's number (its eps rule), biased; with a warning",
    )  # fmt: skip
    return p


def main(args: argparse.Namespace) -> int:
    return run_distributed(args, run)


def _count(path: str, dims: int) -> int | None:
    """Images of a folder, or rows of a saved reference's features (None: mu and sigma only)."""
    from ..metrics import scores as M

    return M.reference_count(path, dims) if path.endswith(".npz") else len(M.image_files(path))


def _check(args: argparse.Namespace) -> None:
    from ..metrics import scores as M

    if args.save_stats is not None:
        if len(args.paths) != 1 or args.paths[0].endswith(".npz"):
            raise UsageError("--save-stats takes one image folder")
        if args.kid or args.prc:
            raise UsageError("--kid and --prc compare two sets; leave them out with --save-stats")
        return
    if len(args.paths) != 2:
        raise UsageError(f"fid takes two folders or .npz files, got {len(args.paths)}")
    counts = []
    for p in args.paths:
        n = _count(p, args.dims)
        if n is None and (args.kid or args.prc):
            raise M.without_features(p, "--kid" if args.kid else "--prc")
        if not p.endswith(".npz"):
            M.check_image_count(n or 0, args.dims, p, args.allow_rank_deficient)
        counts.append(n or 0)
    if args.kid:
        if args.kid_subset_size > min(counts):
            raise UsageError(
                f"--kid-subset-size {args.kid_subset_size} is larger than the number of images ({min(counts)}); "
                f"use --kid-subset-size {min(counts)} or less (torch-fidelity refuses it too)"
            )
        if args.kid_subset_size < 2 or args.kid_subsets < 1:
            raise UsageError("--kid-subset-size must be at least 2 and --kid-subsets at least 1")
    for flag, k in (("--prc-k", args.prc_k), ("--dc-k", args.dc_k)):
        if args.prc and not 1 <= k < min(counts):
            raise UsageError(f"{flag} {k}: needs 1 <= k < the smaller image count ({min(counts)})")


def _save(args: argparse.Namespace, out: Any, ref: Any, rank: int) -> None:
    from ..metrics import scores as M

    if rank == 0:
        M.save_reference(out, ref)
        n = ref.count or 0
        print(json.dumps({"stats": str(out), "images": n}) if args.json else f"saved {out} ({n} images)")


def _scores(args: argparse.Namespace, a: Any, b: Any) -> dict[str, Any]:
    """FID, and KID / precision-recall / density-coverage where asked, of B against A."""
    from ..metrics import density_coverage, precision_recall
    from ..metrics import scores as M

    result: dict[str, Any] = {"fid": M.reference_fid(a, b, allow_rank_deficient=args.allow_rank_deficient)}
    if args.kid:
        kid = M.kernel_inception_distance(
            a.features_for("--kid"), b.features_for("--kid"),
            subsets=args.kid_subsets, subset_size=args.kid_subset_size,
        )  # fmt: skip
        result.update(kid_mean=kid[0], kid_std=kid[1])
    if args.prc:
        real, fake = a.features_for("--prc"), b.features_for("--prc")
        result["precision"], result["recall"] = precision_recall(real, fake, k=args.prc_k)
        result["density"], result["coverage"] = density_coverage(real, fake, k=args.dc_k)
    return result


def _print(args: argparse.Namespace, result: dict[str, Any], notes: list[str]) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({**result, "dims": args.dims, "resize": args.resize, "backend": args.backend}))
        return
    print(f"FID: {result['fid']}")
    if args.kid:
        print(f"KID: {result['kid_mean']} ± {result['kid_std']}")
    if args.prc:
        print(f"precision: {result['precision']}  recall: {result['recall']}  (k = {args.prc_k})")
        print(f"density: {result['density']}  coverage: {result['coverage']}  (k = {args.dc_k})")


def run(args: argparse.Namespace, rank: int, local_rank: int) -> int:
    from ..fileio import check_output_file
    from ..metrics import scores as M

    device = resolve_device(args.device, local_rank)
    _check(args)  # every input check before the network is loaded
    out = None
    if args.save_stats is not None:
        out = check_output_file(
            args.save_stats, "--save-stats", {"A": args.paths[0]}, ours=M.is_reference_file,
            overwrite=args.overwrite, keep_ours=True, what="an .npz statistics file (mu, sigma)", example="stats.npz",
        )  # fmt: skip
    needs_net = not all(p.endswith(".npz") for p in args.paths)
    net = fid_network(args, device) if needs_net else None
    saved = {p: M.load_reference(p, args.dims) for p in args.paths if p.endswith(".npz")}
    M.check_same_rules(list(saved.values()), net, args.resize)  # before any image is read
    kw = dict(feature_kwargs(args, device), allow_rank_deficient=args.allow_rank_deficient)
    refs = []
    for p in args.paths:
        refs.append(saved[p] if p in saved else M.source_reference(p, net, args.dims, **kw))
        report_skipped(refs[-1], rank)
    if out is not None:
        _save(args, out, refs[0], rank)
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.RankDeficientWarning)
        result = _scores(args, *refs)
    if rank == 0:
        _print(
            args, result, [str(w.message) for w in caught if issubclass(w.category, M.RankDeficientWarning)]
        )
    return 0
