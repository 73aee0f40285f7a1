"""``inceptionnet isc``: Inception Score of an image folder (torch-fidelity's definition).

    inceptionnet isc samples/ --weights pt_inception-2015-12-05-6726825d.pth
    inceptionnet isc samples/ --weights ... --resize torch-fidelity      # torch-fidelity's number

The 1008-way softmax of the FID network (fc without its bias: torch-fidelity's ``logits_unbiased``),
images shuffled with numpy RandomState(2020), ``--splits`` chunks; mean ± std over the chunks
(docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from ._args import add_feature_args, feature_kwargs, fid_network, report_skipped, run_distributed


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Inception Score of an image folder.", add_help=add_help)
    p.add_argument("folder", help="a folder of images")
    p.add_argument("--splits", type=int, default=10, help="chunks the score is averaged over")
    add_feature_args(p)
    return p


def main(args: argparse.Namespace) -> int:
    if args.splits < 1:
        raise UsageError(f"--splits must be at least 1, got {args.splits}")
    return run_distributed(args, run)


def run(args: argparse.Namespace, rank: int, local_rank: int) -> int:
    from ..metrics import scores as M
    from ..runtime import resolve_device

    device = resolve_device(args.device, local_rank)
    n = len(M.image_files(args.folder))
    if n < args.splits:
        raise UsageError(f"{args.folder}: {n} images, fewer than --splits {args.splits}")
    net = fid_network(args, device)
    feats = M.folder_features(args.folder, net, dims=2048, **feature_kwargs(args, device))
    report_skipped(feats, rank)
    mean, std = M.inception_score(feats.logits, args.splits)
    if rank == 0:
        if args.json:
            print(json.dumps({"isc_mean": mean, "isc_std": std, "splits": args.splits, "images": len(feats.files),
                              "resize": args.resize, "backend": args.backend}))  # fmt: skip
        else:
            print(f"IS: {mean} ± {std}")
    return 0
