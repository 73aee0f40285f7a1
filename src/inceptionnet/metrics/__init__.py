"""Generative-model metrics with the FID network: FID (pytorch-fid's), Inception Score and KID
(torch-fidelity's). See docs/METRICS.md."""

from .scores import (
    DIMS,
    RESIZE_MODES,
    Features,
    fid,
    folder_features,
    frechet_distance,
    image_files,
    inception_score,
    kernel_inception_distance,
    load_fid_model,
    load_stats,
    save_stats,
    stats_of,
)

__all__ = [
    "DIMS",
    "RESIZE_MODES",
    "Features",
    "fid",
    "folder_features",
    "frechet_distance",
    "image_files",
    "inception_score",
    "kernel_inception_distance",
    "load_fid_model",
    "load_stats",
    "save_stats",
    "stats_of",
]
