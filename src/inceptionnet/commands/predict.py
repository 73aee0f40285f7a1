"""``inceptionnet predict``: top-k classes of images, from a training checkpoint or named weights.

    inceptionnet predict --checkpoint runs/x/best.pt shirt.png boot.jpg
    inceptionnet predict --model googlenet_small --weights fashion_mnist --json img.png
    inceptionnet predict --model inception_v3 --weights w.pth photos/ -o preds.csv
    find /data -name '*.jpg' | inceptionnet predict --checkpoint best.pt - -o preds.jsonl --resume
    torchrun --nproc-per-node 2 -m inceptionnet.predict --checkpoint best.pt photos/ -o preds.csv

Inputs are files, folders (searched recursively), globs, ``@LIST`` (a file of paths, one a line) and
``-`` (paths on stdin); they go through ``inceptionnet.pipeline``: decoded by DataLoader workers while
the model runs, in batches of ``--batch-size``. Images of any mode and size are converted to what
the model expects (grayscale <-> RGB, 16-bit, palette, CMYK; resized and center-cropped). More than
``pipeline.BULK`` (64) inputs run on the fast path (``--backend auto``) unless ``--backend`` says
otherwise (``none``: the plain eager model); int8 is calibrated on the inputs themselves unless
``--calibration`` names images.

Without ``-o`` the results are printed (``--json``: one JSON list); an unreadable file prints
``error: cannot read image ...``, the other images are still predicted and the exit code is 2.
With ``-o preds.csv | preds.jsonl | preds.parquet`` rows are written as they come to ``preds.csv.partial`` and renamed
onto ``preds.csv`` at the end; unreadable files are named, counted and left out, a summary line
follows, and the exit code is 0 unless ``--strict``; ``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .. import data as D
from ..errors import UsageError
from ..runtime import flush_denormal, resolve_device
from ._args import (
    add_fast_args,
    add_image_limit_args,
    add_model_args,
    add_onnx_arg,
    add_pipeline_args,
    announce_fast_path,
    check_empty_flags,
    preprocess,
    run_distributed,
)

# int8 / auto calibration images taken from the inputs of bulk work: each costs a quantizer pass, an
# eager fp32 reference and one run per low-precision candidate before the first photo is classified
BULK_CALIBRATION = 48

__all__ = ["add_fast_args", "add_model_args", "check_empty_flags", "get_args_parser", "main", "preprocess"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Classify images: files, folders, globs, @LIST or -.", add_help=add_help
    )
    p.add_argument(
        "images", nargs="+",
        help="image files, folders (searched recursively), globs ('photos/*.jpg'), @LIST (a file of paths, "
        "one a line) or - (paths on stdin)",
    )  # fmt: skip
    add_model_args(p)
    add_fast_args(p)
    for a in p._actions:  # predict's own default: the fast path for bulk work
        if a.dest == "backend":
            a.help = (
                "eager, compile, onnxruntime, openvino, aoti, executorch, auto (the fastest that passes its checks, "
                "among the first four) or none "
                "(the plain eager model); default: auto for more than 64 inputs, else none"
            )
        if a.dest == "dtype":
            a.default, a.help = (
                None,
                (
                    "with --backend: fp32 (default), bf16, int8, or auto (lower precision too, where it agrees "
                    "with fp32 on >= 99 %% of the calibration images' top-1); default for bulk work without "
                    "--backend: auto"
                ),
            )
        if a.dest == "calibration":
            a.metavar, a.help = (
                "NAME:SPLIT|DIR",
                f"int8 / auto: calibration images (default: {BULK_CALIBRATION} of the inputs themselves, spread over them)",
            )
    add_onnx_arg(p, "an exported .onnx file, run with ONNX Runtime")
    add_image_limit_args(p)
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image")
    p.add_argument(
        "--invert",
        action="store_true",
        help="invert gray levels (dark garments on white, for Fashion-MNIST models)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (without -o)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="write the predictions to this .csv, .jsonl or .parquet (pyarrow) file",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an -o file that is not an earlier predictions file"
    )
    p.add_argument(
        "--resume", action="store_true",
        help="continue the -o file of an interrupted run (its .partial file): inputs already in it are skipped",
    )  # fmt: skip
    add_pipeline_args(p)
    p.add_argument("--strict", action="store_true", help="with -o: exit 2 when an input cannot be read")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    return p


def check_args(args: argparse.Namespace) -> None:
    check_empty_flags(
        args, "--checkpoint", "--model", "--weights", "--onnx", "--device", "--output", "--calibration"
    )
    if args.topk < 1:
        raise UsageError(f"--topk must be at least 1, got {args.topk}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must not be negative, got {args.workers}")
    if args.output and args.json:
        raise UsageError(
            "--json prints to the terminal; with -o the suffix says the format (.csv, .jsonl or .parquet)"
        )
    if (args.resume or args.overwrite) and not args.output:
        raise UsageError(
            f"{'--resume' if args.resume else '--overwrite'} applies to an -o file; give -o preds.csv"
        )


def main(args: argparse.Namespace) -> int:
    check_args(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: each rank predicts its share
        return run_distributed(args, run)
    return run(args, 0, 0)


def run(args: argparse.Namespace, rank: int, local_rank: int) -> int:
    from .. import pipeline as P

    fmt = P.row_format(args.output, args.topk) if args.output else None
    paths: list[str] = []
    out, done = None, Counter[str]()
    if rank == 0:
        paths = P.expand_inputs(args.images)
        if fmt is not None:
            out = P.OutputFile(_checked_output(args, paths), fmt, resume=args.resume)
            done = out.start()
    paths = P.shared(paths)
    todo = P.shared(_not_done(paths, done))
    device = resolve_device(args.device, local_rank)
    predictor = open_predictor(args, device, [p for _, p in todo], rank)
    icfg = predictor.input_config
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)
    rows: list[dict[str, Any]] = []

    def emit(results: list[P.Result]) -> None:
        for r in results:
            if r.error is not None:
                print(f"error: {r.error}", file=sys.stderr)
        if out is not None:
            out.write(results)
        elif args.json:
            rows.extend({"path": r.path, "top": r.row} if r.error is None else {"path": r.path, "error": r.error}
                        for r in results)  # fmt: skip
        else:
            for r in results:
                if r.error is None:
                    print(
                        f"{r.path}: " + ", ".join(f"{t['label']} {t['prob']:.3f}" for t in r.row), flush=True
                    )

    try:
        with flush_denormal():
            summary = P.stream(
                todo, predictor, P.top_rows(predictor.classes, args.topk, getattr(args, "allow_nan", False)), emit,
                in_chans=icfg.in_chans, transform=transform, batch_size=args.batch_size, workers=args.workers,
                invert=args.invert, show_progress=not args.quiet, draft=getattr(args, "jpeg_draft", False),
            )  # fmt: skip
    except KeyboardInterrupt:
        if out is not None:
            out.close()
            print(f"interrupted: the rows done are kept in {out.partial}; run the same command with --resume "
                  "to finish", file=sys.stderr)  # fmt: skip
        return 130
    except BaseException:
        if out is not None:
            out.close()  # the partial file stays, for --resume
        raise
    return _finish(args, summary, out, rows, paths, len(paths) - len(todo)) if rank == 0 else 0


def _checked_output(args: argparse.Namespace, paths: list[str]) -> Path:
    from .. import pipeline as P
    from ..fileio import check_output_file

    fmt = P.row_format(args.output, args.topk)
    sources = [s for s in (args.checkpoint, args.weights, args.onnx) if s and Path(s).is_file()]
    return check_output_file(
        args.output, "-o", [("input", p) for p in [*paths, *sources]],
        ours=lambda q: P.is_our_output(q, fmt), overwrite=args.overwrite,
        what="a predictions file", example="preds.csv",
    )  # fmt: skip


def _not_done(paths: list[str], done: Any) -> list[tuple[int, str]]:
    """(index, path) of the inputs not in ``done`` (a multiset: a path given twice is done twice)."""
    left = done.copy()
    todo = []
    for i, p in enumerate(paths):
        if left[p] > 0:
            left[p] -= 1
        else:
            todo.append((i, p))
    return todo


def open_predictor(args: argparse.Namespace, device: Any, paths: list[str], rank: int) -> Any:
    """The model of the flags on ``device``; bulk work (more than ``pipeline.BULK`` inputs) on the fast
    path unless --backend says otherwise; under torchrun the backend rank 0 picks is used on every rank."""
    from .. import pipeline as P
    from ..checkpoint import ModelSource, accelerate, check_fast_flags, open_for_inference

    allow_nan = getattr(args, "allow_nan", False)
    backend = None if args.backend == "none" else args.backend
    source = ModelSource.from_args(args)
    if source.kind == "exported":  # an exported file runs in its own runtime (loads no model code)
        p = open_for_inference(
            source, device, backend=backend, dtype=args.dtype or "fp32", allow_nan=allow_nan
        )
    else:
        dtype = args.dtype or "fp32"
        if args.backend is None and len(paths) > P.BULK:  # bulk work: the fastest path that passes
            backend, dtype = "auto", args.dtype or "auto"
        check_fast_flags(backend, dtype)  # before the model is opened
        p = open_for_inference(source, device, allow_nan=allow_nan)
        if backend is not None:
            calibration = _calibration(args, p, paths, dtype)
            batch = min(args.batch_size, max(len(paths), 1))
            if rank != 0:  # under torchrun: the backend rank 0 picked, so that every rank computes alike
                backend, dtype = P.shared(None)
            bulk_default = args.backend is None and args.dtype is None
            p = accelerate(p, backend, dtype, calibration, batch=batch,  # type: ignore[arg-type]
                           prefer_low_precision=bulk_default, auto_iters=2 if bulk_default else 3)  # fmt: skip
            if rank == 0 and P.is_dist():
                P.shared((p.backend, p.dtype))
    if rank == 0 and not args.quiet:
        announce_fast_path(p)
    return p


def _spread(paths: list[str], n: int) -> list[str]:
    """``n`` of ``paths`` evenly spaced (a folder sorted by class gives every class its share); all
    of them when there are fewer. Unreadable ones are skipped by the reader, so a few spare follow."""
    if len(paths) <= n:
        return paths
    step = len(paths) / n
    chosen = [paths[int(i * step)] for i in range(n)]
    taken = set(chosen)
    return chosen + [p for p in paths if p not in taken][: n // 4]


def _calibration(args: argparse.Namespace, p: Any, paths: list[str], dtype: str) -> Any:
    """int8 / auto calibration images: --calibration NAME:SPLIT as given, up to
    ``DEFAULT_CALIBRATION_SIZE`` of a folder's images, or by default the first ``BULK_CALIBRATION``
    inputs themselves (None for fp32 / bf16)."""
    from .. import pipeline as P
    from ..deploy.quant import DEFAULT_CALIBRATION_SIZE, parse_dtype

    if parse_dtype(dtype) not in ("int8", "auto"):
        return args.calibration
    if args.calibration and not Path(args.calibration).is_dir():
        return args.calibration
    images = P.expand_path(args.calibration) if args.calibration else _spread(paths, BULK_CALIBRATION)
    icfg = p.input_config
    return P.image_tensor(
        images, icfg.in_chans, D.eval_transform(icfg, icfg.in_chans, native_size=-1),
        limit=DEFAULT_CALIBRATION_SIZE if args.calibration else BULK_CALIBRATION, invert=args.invert, batch_size=args.batch_size,
        workers=0 if args.workers is None else args.workers,  # a few dozen images: no processes to start
        draft=getattr(args, "jpeg_draft", False),
    )  # fmt: skip


def _finish(
    args: argparse.Namespace,
    summary: Any,
    out: Any,
    rows: list[dict[str, Any]],
    paths: list[str],
    resumed: int,
) -> int:
    """The output finalised (or the JSON printed), the summary and the exit code."""
    from .. import pipeline as P
    from ..fileio import json_text

    if out is None:
        if args.json:
            print(json_text(rows))
        return 2 if summary.failed else 0
    written = out.finish()
    added = P.changed_inputs(args.images, paths)
    if added:
        print(f"note: {len(added)} image files appeared in the input folders during the run and were not "
              f"predicted (e.g. {added[0]}); run the same command with --resume to add them", file=sys.stderr)  # fmt: skip
    if not args.quiet:
        print(P.summary_line(summary, "predict", resumed, written), file=sys.stderr)
    return 2 if summary.failed and args.strict else 0
