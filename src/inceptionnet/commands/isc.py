"""``inceptionnet isc``: Inception Score of an image folder (torch-fidelity's definition).

    inceptionnet isc samples/ --weights pt_inception-2015-12-05-6726825d.pth

The 1008-way softmax of the FID network (fc without its bias: torch-fidelity's ``logits_unbiased``),
images shuffled with numpy RandomState(2020), ``--splits`` chunks; mean ± std over the chunks
(docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import json

from ..runtime import DEVICE_HELP, resolve_device


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from ..metrics.scores import RESIZE_MODES

    p = argparse.ArgumentParser(description="Inception Score of an image folder.", add_help=add_help)
    p.add_argument("folder", help="a folder of images")
    p.add_argument("--weights", default=None, help="the FID network's state_dict file (pytorch-fid's .pth)")
    p.add_argument("--splits", type=int, default=10, help="chunks the score is averaged over")
    p.add_argument("--resize", default="pytorch-fid", choices=RESIZE_MODES, help="resize to 299 as this tool")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    return p


def main(args: argparse.Namespace) -> int:
    from ..metrics import scores as M

    if args.splits < 1:
        raise ValueError(f"--splits must be at least 1, got {args.splits}")
    device = resolve_device(args.device)
    model = M.load_fid_model(args.weights, device)
    feats = M.folder_features(
        args.folder, model, dims=2048, batch_size=args.batch_size, resize=args.resize, device=device
    )
    mean, std = M.inception_score(feats.logits, args.splits)
    if args.json:
        print(
            json.dumps({"isc_mean": mean, "isc_std": std, "splits": args.splits, "images": len(feats.files)})
        )
    else:
        print(f"IS: {mean} ± {std}")
    return 0
