"""Generative-model metrics with the FID network: FID (pytorch-fid's), Inception Score, KID and
precision / recall (torch-fidelity's), density / coverage (the prdc package's), with pytorch-fid's,
torch-fidelity's or clean-fid's resize. See docs/METRICS.md."""

from .prdc import density_coverage, knn_radii, precision_recall
from .resize import RESIZE_MODES, preprocess, tf1_bilinear_resize
from .scores import (
    BACKENDS,
    DIMS,
    Features,
    FIDNetwork,
    check_image_count,
    fid,
    fid_network,
    folder_features,
    frechet_distance,
    image_files,
    inception_score,
    kernel_inception_distance,
    load_fid_model,
    load_stats,
    save_stats,
    source_stats,
    stats_of,
)

__all__ = [
    "BACKENDS",
    "DIMS",
    "RESIZE_MODES",
    "FIDNetwork",
    "Features",
    "check_image_count",
    "density_coverage",
    "fid",
    "fid_network",
    "folder_features",
    "frechet_distance",
    "image_files",
    "inception_score",
    "kernel_inception_distance",
    "knn_radii",
    "load_fid_model",
    "load_stats",
    "precision_recall",
    "preprocess",
    "save_stats",
    "source_stats",
    "stats_of",
    "tf1_bilinear_resize",
]

from .objects import FID, KID, InceptionScore, PrecisionRecall  # noqa: E402  (metric objects, docs/METRICS.md)

__all__ += ["FID", "KID", "InceptionScore", "PrecisionRecall"]
