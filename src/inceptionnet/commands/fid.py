"""``inceptionnet fid``: Fréchet Inception Distance between two image folders or ``.npz`` statistics.

    inceptionnet fid real/ fake/ --weights pt_inception-2015-12-05-6726825d.pth
    inceptionnet fid real/ fake/ --weights ... --resize torch-fidelity --kid --kid-subset-size 100
    inceptionnet fid real/ --save-stats real.npz
    inceptionnet fid real.npz fake/ --json
    torchrun --nproc-per-node 2 -m inceptionnet.metrics fid real/ fake/ --weights ...

pytorch-fid's number: its network (``fid_inception_v3``), resize and statistics; ``--resize``
torch-fidelity / clean for those tools' input rules; ``--kid``: torch-fidelity's KID too
(docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--save-stats", default=None, metavar="OUT.npz", help="write the first folder's mu, sigma")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--save-stats may replace an existing file (never a checkpoint or weights)",
    )
    p.add_argument("--kid", action="store_true", help="KID too (torch-fidelity's; needs two folders)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of random subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID: images per subset")
    return p


def main(args: argparse.Namespace) -> int:
    return run_distributed(args, run)


def _check(args: argparse.Namespace) -> None:
    from ..metrics import scores as M

    if args.save_stats is not None:
        if len(args.paths) != 1 or args.paths[0].endswith(".npz"):
            raise UsageError("--save-stats takes one image folder")
        if args.kid:
            raise UsageError("--kid compares two folders; leave it out with --save-stats")
        return
    if len(args.paths) != 2:
        raise UsageError(f"fid takes two folders or .npz files, got {len(args.paths)}")
    for p in args.paths:
        if not p.endswith(".npz"):
            M.check_image_count(len(M.image_files(p)), args.dims, p)
        elif args.kid:
            raise UsageError(f"--kid needs the features of two image folders; {p} holds only mu and sigma")
    if args.kid:
        n = min(len(M.image_files(p)) for p in args.paths)
        if args.kid_subset_size > n:
            raise UsageError(
                f"--kid-subset-size {args.kid_subset_size} is larger than the number of images ({n}); "
                f"use --kid-subset-size {n} or less (torch-fidelity refuses it too)"
            )
        if args.kid_subset_size < 2 or args.kid_subsets < 1:
            raise UsageError("--kid-subset-size must be at least 2 and --kid-subsets at least 1")


def run(args: argparse.Namespace, rank: int, local_rank: int) -> int:
    from ..fileio import check_output_file, npz_arrays
    from ..metrics import scores as M

    device = resolve_device(args.device, local_rank)
    _check(args)  # every input check before the network is loaded
    out = None
    if args.save_stats is not None:
        out = check_output_file(
            args.save_stats, "--save-stats", {"A": args.paths[0]}, ours=lambda p: npz_arrays(p) == {"mu", "sigma"},
            overwrite=args.overwrite, keep_ours=True, what="an .npz statistics file (mu, sigma)", example="stats.npz",
        )  # fmt: skip
    needs_net = not all(p.endswith(".npz") for p in args.paths)
    net = fid_network(args, device) if needs_net else None
    kw = feature_kwargs(args, device)
    if out is not None:
        mu, sigma, feats = M.source_stats(args.paths[0], net, args.dims, **kw)
        report_skipped(feats, rank)
        if rank == 0:
            M.save_stats(out, mu, sigma)
            n = len(feats.files) if feats else 0
            print(json.dumps({"stats": str(out), "images": n}) if args.json else f"saved {out} ({n} images)")
        return 0
    m1, s1, f1 = M.source_stats(args.paths[0], net, args.dims, **kw)
    report_skipped(f1, rank)
    m2, s2, f2 = M.source_stats(args.paths[1], net, args.dims, **kw)
    report_skipped(f2, rank)
    result: dict[str, Any] = {"fid": M.frechet_distance(m1, s1, m2, s2)}
    if args.kid:
        assert f1 is not None and f2 is not None
        kid = M.kernel_inception_distance(
            f1.features, f2.features, subsets=args.kid_subsets, subset_size=args.kid_subset_size
        )
        result.update(kid_mean=kid[0], kid_std=kid[1])
    if rank == 0:
        if args.json:
            print(json.dumps({**result, "dims": args.dims, "resize": args.resize, "backend": args.backend}))
        else:
            print(f"FID: {result['fid']}")
            if args.kid:
                print(f"KID: {result['kid_mean']} ± {result['kid_std']}")
    return 0
