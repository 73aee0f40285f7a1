"""Data: data sets by name, image files, and how images are prepared for a model.

Where things live (every name below is also importable from ``inceptionnet.data`` itself):

- ``config``: ``InputConfig`` (size, channels, statistics, resize policy, input space; ``from_model``,
  ``from_dict``, ``to_dict``) and ``channel_stats``. Imports nothing else of the package.
- ``images``: ``read_image`` / ``decode_image`` / ``image_to_tensor`` (PIL: EXIF orientation, first
  frame, transparency over ``BACKGROUND``, 16-bit and float ranges), the guards ``MAX_IMAGE_BYTES``,
  ``IMAGE_FORMATS`` (what PIL may open; ``$INCEPTIONNET_IMAGE_FORMATS`` adds to it, never EPS) and
  ``check_image_size`` (``ImageLimits``: ``MAX_IMAGE_PIXELS`` decoded and resized, ``MAX_RESIZED_SIDE``;
  ``image_limits(...)`` sets them for a block), ``IMAGE_EXTENSIONS``, and the once-said ``note:`` lines.
- ``datasets``: names and facts (``DATASETS``, ``SPLITS``, ``DataInfo``, ``INFO``, ``dataset_info``),
  where a root is looked for (``candidate_roots``: --data, $INCEPTIONNET_DATA, the cache, system
  copies), the readers (Fashion-MNIST idx, sklearn digits, CIFAR-10 batches through a numpy-only
  unpickler), splits (``load_arrays``, ``holdout_split``), ``TensorImages``, and ImageFolder scanning
  (``ImageFolderFiles``, ``imagefolder_root``, ``folder_images``). Uses ``images``, ``transforms``.
- ``transforms``: ``train_transform``, ``eval_transform``, ``to_model_input`` (torchvision v2) and
  ``BatchAugment`` (the same augmentation as tensor ops per batch); every resize a ``BoundedResize``
  (``resize_target``, ``eval_resize``). Uses ``config``, ``images``.

Imports run one way inside the package (config, images <- transforms <- datasets), and no
module loads torchvision or PIL until it is used: ``import inceptionnet.data`` stays light.

Setting a limit on the package (``inceptionnet.data.MAX_IMAGE_BYTES = ...``, as the error messages
say) sets it in ``images``, where it is read.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..errors import DataNotFoundError, ImageReadError
from . import images as _images
from .config import InputConfig, channel_stats
from .datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    FMNIST_FILES,
    INFO,
    SPLITS,
    SYSTEM_ROOTS,
    DataInfo,
    ImageFolderFiles,
    TensorImages,
    candidate_roots,
    check_dataset_name,
    dataset_info,
    folder_images,
    holdout_split,
    imagefolder_root,
    load_arrays,
    load_cifar10,
    load_digits_arrays,
    load_fashion_mnist,
)
from .images import (
    BACKGROUND,
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_RESIZED_SIDE,
    ImageLimits,
    ImageTooLargeError,
    check_image_size,
    decode_image,
    image_formats,
    image_limits,
    image_to_tensor,
    read_image,
)
from .transforms import (
    BatchAugment,
    BoundedResize,
    eval_resize,
    eval_transform,
    resize_target,
    to_model_input,
    train_transform,
)

__all__ = [
    "BACKGROUND",
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FMNIST_FILES",
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "INFO",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_RESIZED_SIDE",
    "SPLITS",
    "SYSTEM_ROOTS",
    "BatchAugment",
    "BoundedResize",
    "DataInfo",
    "DataNotFoundError",
    "ImageFolderFiles",
    "ImageLimits",
    "ImageReadError",
    "ImageTooLargeError",
    "InputConfig",
    "TensorImages",
    "candidate_roots",
    "channel_stats",
    "check_dataset_name",
    "check_image_size",
    "dataset_info",
    "decode_image",
    "eval_resize",
    "eval_transform",
    "folder_images",
    "holdout_split",
    "image_formats",
    "image_limits",
    "image_to_tensor",
    "imagefolder_root",
    "load_arrays",
    "load_cifar10",
    "load_digits_arrays",
    "load_fashion_mnist",
    "read_image",
    "resize_target",
    "to_model_input",
    "train_transform",
]

_IMAGE_SETTINGS = ("BACKGROUND", "IMAGE_FORMATS", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_RESIZED_SIDE")


class _Package(types.ModuleType):
    """``inceptionnet.data`` itself: a setting of ``images`` set here is set there too, so the limits
    keep the one public place they always had."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _IMAGE_SETTINGS:
            setattr(_images, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
