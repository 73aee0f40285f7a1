"""``inceptionnet fid``: Fréchet Inception Distance between two image folders or ``.npz`` statistics.

    inceptionnet fid real/ fake/ --weights pt_inception-2015-12-05-6726825d.pth
    inceptionnet fid real/ --save-stats real.npz
    inceptionnet fid real.npz fake/ --json

pytorch-fid's number: its network (``fid_inception_v3``), resize and statistics (docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import json

from ..runtime import DEVICE_HELP, resolve_device


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from ..metrics.scores import DIMS, RESIZE_MODES

    p = argparse.ArgumentParser(
        description="FID between two image folders or .npz statistics files (pytorch-fid's numbers).",
        add_help=add_help,
    )
    p.add_argument(
        "paths", nargs="+", metavar="A B", help="two image folders or .npz files (one with --save-stats)"
    )
    p.add_argument("--weights", default=None, help="the FID network's state_dict file (pytorch-fid's .pth)")
    p.add_argument("--dims", type=int, default=2048, choices=DIMS, help="feature taps (2048: pool3)")
    p.add_argument("--resize", default="pytorch-fid", choices=RESIZE_MODES, help="resize to 299 as this tool")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--save-stats", default=None, metavar="OUT.npz", help="write the first folder's mu, sigma")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    return p


def main(args: argparse.Namespace) -> int:
    from ..fileio import check_output_file
    from ..metrics import scores as M

    device = resolve_device(args.device)
    if args.save_stats is not None:
        if len(args.paths) != 1 or args.paths[0].endswith(".npz"):
            raise ValueError("--save-stats takes one image folder")
        out = check_output_file(args.save_stats, "--save-stats", {"A": args.paths[0]})
        model = M.load_fid_model(args.weights, device)
        feats = M.folder_features(
            args.paths[0],
            model,
            dims=args.dims,
            batch_size=args.batch_size,
            resize=args.resize,
            device=device,
        )
        mu, sigma = M.stats_of(feats.features, args.paths[0])
        M.save_stats(out, mu, sigma)
        print(json.dumps({"stats": str(out), "images": len(feats.files)}) if args.json else f"saved {out}")
        return 0
    if len(args.paths) != 2:
        raise ValueError(f"fid takes two folders or .npz files, got {len(args.paths)}")
    value = M.fid(
        args.paths[0], args.paths[1], weights=args.weights, dims=args.dims, batch_size=args.batch_size,
        resize=args.resize, device=device,
    )  # fmt: skip
    print(
        json.dumps({"fid": value, "dims": args.dims, "resize": args.resize}) if args.json else f"FID: {value}"
    )
    return 0
