"""The training program: ``inceptionnet train`` / ``python -m inceptionnet.train`` /
``torchrun -m inceptionnet.train``.

    args.py     the flags, recipes and their validation (one parse path)
    build.py    the pieces: process group and device, model, data sets and loaders, optimizer, schedule
    engine.py   one training epoch, one evaluation pass (eval_loader, TTA), the loss, schedules, EMA
    state.py    what a run resumes from: the run's pieces, RNG states, checkpoints, graceful stop
    rundir.py   the run directory: created, locked (.lock) and owned (--resume / --overwrite) by rank 0
    reports.py  args.yaml, metrics.csv, TensorBoard, plots, results.json, best.safetensors
    trainer.py  ``main(args)``: the run as named steps
    ablation.py the ablation studies (``inceptionnet ablate``): variants, runs, reuse, reports
"""

from .args import get_args_parser, parse_args, validate_args
from .build import build_model, input_config
from .trainer import cli, main

__all__ = ["build_model", "cli", "get_args_parser", "input_config", "main", "parse_args", "validate_args"]
