"""Data sets by name, their transforms, and image files for prediction.

Data sets: ``fashion_mnist`` (idx files), ``digits`` (sklearn's bundled 8x8 digits, for tests),
``cifar10`` (local python batches, read without unpickling arbitrary objects), ``imagefolder``
(``train/`` and ``val/`` folders of the user's own images).

A data set root is looked for in this order: ``--data PATH`` -> ``$INCEPTIONNET_DATA`` ->
``~/.cache/inceptionnet`` -> system copies (Debian's ``dataset-fashion-mnist``) -> a torchvision
download where a network exists.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import pickle
import stat
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import DataNotFoundError, ImageReadError, first_line

if TYPE_CHECKING:  # torchvision and PIL load on first use: `import inceptionnet` stays light
    from torchvision.transforms import v2

DATASETS = ("fashion_mnist", "digits", "cifar10", "imagefolder")
SPLITS = ("train", "val", "test")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a data set: channels, native size, statistics, classes."""

    name: str
    in_chans: int
    image_size: int  # native side length; 0 for imagefolder (variable)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    hflip: bool  # is a horizontal flip label-preserving?


INFO: dict[str, DataInfo] = {
    "fashion_mnist": DataInfo("fashion_mnist", 1, 28, (0.2860,), (0.3530,), FASHION_MNIST_CLASSES, True),
    "digits": DataInfo("digits", 1, 8, (0.3057,), (0.3806,), tuple(str(i) for i in range(10)), False),
    "cifar10": DataInfo(
        "cifar10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES, True
    ),
}

SYSTEM_ROOTS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")]}
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def candidate_roots(name: str, data: str | os.PathLike[str] | None) -> list[Path]:
    """The places a data set is looked for, in order."""
    if data is not None:
        return [Path(data).expanduser()]
    roots: list[Path] = []
    if os.environ.get("INCEPTIONNET_DATA"):
        roots.append(Path(os.environ["INCEPTIONNET_DATA"]).expanduser())
    roots.append(Path("~/.cache/inceptionnet").expanduser())
    roots += SYSTEM_ROOTS.get(name, [])
    return roots


def _find_file(root: Path, stem: str) -> Path | None:
    for sub in ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"):
        for suffix in ("", ".gz"):
            p = root / sub / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


_IDX_KINDS = {"images": 3, "labels": 1}  # the dimensions of a Fashion-MNIST idx file of each kind
_REFETCH = "fetch the file again (e.g. 'apt-get install --reinstall dataset-fashion-mnist')"


def _read_upto(f: Any, n: int) -> bytes:
    """At most ``n`` bytes of ``f``, read in chunks: a header declaring a huge size (or a gzip bomb)
    costs no more memory than the file holds."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, 1 << 22))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_idx(path: Path, kind: str = "images") -> np.ndarray:
    """An idx file of unsigned bytes (``kind``: ``images`` N x 28 x 28, ``labels`` N, 0-9), checked
    against its header; a damaged or foreign file raises one ``DataNotFoundError`` naming it."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    ndim_expected = _IDX_KINDS[kind]
    try:
        with opener(path, "rb") as f:
            head = _read_upto(f, 4)
            if not head:
                empty = "holds no data" if path.suffix == ".gz" else "is empty (0 bytes)"
                raise DataNotFoundError(f"{path} {empty}; {_REFETCH}")
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 8:
                raise DataNotFoundError(
                    f"{path} is not an idx file of unsigned bytes (it starts with {head.hex(' ')}; "
                    f"Fashion-MNIST {kind} files start with 00 00 08 0{ndim_expected}); {_REFETCH}"
                )
            ndim = head[3]
            if ndim != ndim_expected:
                other = "labels" if kind == "images" else "images"
                raise DataNotFoundError(
                    f"{path} holds {ndim}-dimensional data, but a Fashion-MNIST {kind} file holds "
                    f"{ndim_expected}-dimensional data (is it the {other} file?)"
                )
            dims_raw = _read_upto(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataNotFoundError(f"{path} is truncated within its header; {_REFETCH}")
            dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            if kind == "images" and dims[1:] != [28, 28]:
                raise DataNotFoundError(
                    f"{path} holds {dims[1]}x{dims[2]} images; Fashion-MNIST images are 28x28"
                )
            n = math.prod(dims)  # Python ints: a damaged header cannot overflow
            raw = _read_upto(f, n + 1)
    except DataNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as e:  # unreadable, or a damaged gzip stream
        raise DataNotFoundError(
            f"cannot read {path}: {first_line(e, limit=160)}; the file is damaged, {_REFETCH}"
        ) from None
    if len(raw) < n:
        raise DataNotFoundError(
            f"{path} is truncated: {len(raw):,} of the {n:,} bytes its header declares "
            f"({' x '.join(map(str, dims))}); {_REFETCH}"
        )
    if len(raw) > n:
        raise DataNotFoundError(
            f"{path} holds more bytes than its header declares ({' x '.join(map(str, dims))}); "
            f"the file is damaged or not a Fashion-MNIST {kind} file"
        )
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(dims)
    if kind == "labels" and arr.size and int(arr.max()) >= len(FASHION_MNIST_CLASSES):
        i = int(np.argmax(arr >= len(FASHION_MNIST_CLASSES)))
        raise DataNotFoundError(
            f"{path}: label {int(arr[i])} at index {i} is not a Fashion-MNIST class (0-9); "
            "the file is damaged or not a Fashion-MNIST labels file"
        )
    return arr


def load_fashion_mnist(split: str, data: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images N x 28 x 28 and int64 labels of the official ``train`` (60k) or ``test`` (10k) split."""
    tried = []
    half: str | None = None  # a root holding one file of the pair: said if nothing better is found
    for root in candidate_roots("fashion_mnist", data):
        stems = FMNIST_FILES[split]
        img, lbl = (_find_file(root, s) for s in stems)
        if img and lbl:
            x, y = _read_idx(img, "images"), _read_idx(lbl, "labels")
            if len(x) != len(y):
                raise DataNotFoundError(
                    f"{img} holds {len(x):,} images but {lbl} holds {len(y):,} labels; the files do not "
                    f"belong together (another split or a damaged download), {_REFETCH}"
                )
            return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))
        if (img or lbl) and half is None:
            found, missing = (img, stems[1]) if img else (lbl, stems[0])
            half = f"found {found} but not {missing}[.gz] next to it"
        tried.append(str(root))
    downloaded = _try_torchvision_download(split) if data is None else None
    if downloaded is not None:
        return downloaded
    if half is not None:
        raise DataNotFoundError(f"Fashion-MNIST {split} split incomplete: {half}")
    raise DataNotFoundError(
        f"Fashion-MNIST not found (looked in: {', '.join(tried)}); install it with "
        "'apt-get install dataset-fashion-mnist' (Debian), or pass --data DIR holding the four "
        "*-idx?-ubyte[.gz] files"
    )


def _try_torchvision_download(split: str) -> tuple[Tensor, Tensor] | None:
    if os.environ.get("INCEPTIONNET_NO_DOWNLOAD"):
        return None
    from torchvision.datasets import FashionMNIST

    root = Path("~/.cache/inceptionnet").expanduser()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = FashionMNIST(str(root), train=split == "train", download=True)
    except Exception:  # no network: the caller reports where it looked
        return None
    return ds.data.clone(), ds.targets.clone()


def load_digits_arrays() -> tuple[Tensor, Tensor]:
    """sklearn's bundled 8x8 digits (1,797 images) as uint8 N x 8 x 8 (0-16 scaled to 0-255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8))
    return images, torch.from_numpy(d.target.astype(np.int64))


class _UnsafePickle(pickle.UnpicklingError):
    """A CIFAR batch asking for a class that is not a numpy array (it could run code)."""


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches: dicts of bytes, lists and numpy arrays, nothing that runs code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _UnsafePickle(f"refusing to load {module}.{name} from a CIFAR batch (unsafe)")


_CIFAR_REFETCH = "extract cifar-10-python.tar.gz again"


def _cifar_field(d: dict[Any, Any], key: str) -> Any:
    """``d[b"key"]`` (the official batches, read with encoding="bytes") or ``d["key"]`` (re-pickled)."""
    return d[key.encode()] if key.encode() in d else d.get(key)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x 3 x 32 x 32, int64 N) from one python batch; anything else is one error naming it."""

    def bad(why: str) -> DataNotFoundError:
        return DataNotFoundError(f"CIFAR-10 batch {path} {why}")

    try:
        size = path.stat().st_size
        if size == 0:
            raise bad(f"is empty (0 bytes); {_CIFAR_REFETCH}")
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except DataNotFoundError:
        raise
    except _UnsafePickle as e:
        raise DataNotFoundError(f"cannot read CIFAR-10 batch {path}: {e}") from None
    except OSError as e:  # the file itself: permissions, I/O
        raise DataNotFoundError(f"cannot read CIFAR-10 batch {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - only numpy arrays can be built: any failure is damage
        raise bad(
            f"is damaged or not a CIFAR-10 python batch ({type(e).__name__}: {first_line(e, limit=120)}); "
            f"{_CIFAR_REFETCH}"
        ) from None
    if not isinstance(d, dict):
        raise bad(f"holds a {type(d).__name__}, not the dict of a CIFAR-10 batch (data, labels)")
    data, labels = _cifar_field(d, "data"), _cifar_field(d, "labels")
    if data is None or labels is None:
        keys = ", ".join(
            sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in d)[:6]
        )
        cifar100 = (
            "; CIFAR-100 batches (fine_labels) are not supported"
            if _cifar_field(d, "fine_labels") is not None
            else ""
        )
        raise bad(f"has no {'data' if data is None else 'labels'} entry (its keys: {keys}){cifar100}")
    try:
        x = np.asarray(data)
        y = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise bad(f"holds data or labels that are not arrays ({first_line(e, limit=120)})") from None
    if x.ndim == 2 and x.shape[1] == 3 * 32 * 32:
        x = x.reshape(-1, 3, 32, 32)
    if x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise bad(
            f"holds data of shape {tuple(x.shape)}; CIFAR-10 data is N x 3072 (N images of 3 x 32 x 32)"
        )
    if x.dtype != np.uint8:
        if x.dtype.kind not in "iu" or (x.size and (int(x.min()) < 0 or int(x.max()) > 255)):
            raise bad(f"holds data of type {x.dtype}, not pixel values 0-255 (uint8)")
        x = x.astype(np.uint8)
    if y.ndim != 1 or len(y) != len(x):
        raise bad(f"holds {y.size} labels of shape {tuple(y.shape)} for {len(x)} images; one label per image")
    if y.dtype.kind not in "iu":
        raise bad(f"holds labels of type {y.dtype}, not integers")
    wrong = (y < 0) | (y >= len(CIFAR10_CLASSES))
    if wrong.any():
        i = int(np.argmax(wrong))
        raise bad(f"holds label {int(y[i])} at index {i}; CIFAR-10 labels are 0-9")
    return x, y.astype(np.int64)


def load_cifar10(split: str, data: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images N x 3 x 32 x 32 and labels from the python batches (cifar-10-batches-py)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    tried = []
    partial: str | None = None  # some batch files but not all: said if no root has them all
    for root in candidate_roots("cifar10", data):
        for base in (root, root / "cifar-10-batches-py"):
            present = [n for n in names if (base / n).is_file()]
            if len(present) == len(names):
                xs, ys = zip(*(_read_cifar_batch(base / n) for n in names), strict=True)
                return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
            if present and partial is None:
                missing = [n for n in names if n not in present]
                partial = f"{base} has {', '.join(present)} but not {', '.join(missing)}; {_CIFAR_REFETCH}"
        if partial is None and (root / "cifar-10-python.tar.gz").is_file():
            partial = f"{root / 'cifar-10-python.tar.gz'} is not extracted; run tar xzf on it in {root}"
        tried.append(str(root))
    if partial is not None:
        raise DataNotFoundError(f"CIFAR-10 {split} batches incomplete: {partial}")
    raise DataNotFoundError(
        f"CIFAR-10 not found (looked in: {', '.join(tried)}); pass --data DIR holding "
        "cifar-10-batches-py (data_batch_1..5, test_batch)"
    )


class TensorImages(Dataset[tuple[Tensor, int]]):
    """In-memory uint8 images (N x H x W or N x C x H x W) with labels and a per-sample transform."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: Sequence[str],
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.images = images if images.dim() == 4 else images.unsqueeze(1)
        self.labels = labels
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def holdout_split(n: int, val_size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Fixed train/val index split: the same images are held out for any training seed."""
    if not 0 <= val_size < n:
        raise ValueError(f"--val-split must be between 0 and {n - 1}, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def load_arrays(
    name: str, split: str, data: str | None, val_size: int
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Images and labels of a built-in data set's ``train`` / ``val`` / ``test`` split."""
    info = INFO[name]
    if name == "digits":
        x, y = load_digits_arrays()
        # a fixed 80/20 train/test split; val is held out of train
        train_idx, test_idx = holdout_split(len(y), len(y) // 5, seed=1234)
        x, y = (x[test_idx], y[test_idx]) if split == "test" else (x[train_idx], y[train_idx])
    else:
        loader = load_fashion_mnist if name == "fashion_mnist" else load_cifar10
        x, y = loader("test" if split == "test" else "train", data)
    if split != "test" and val_size > 0:
        tr, va = holdout_split(len(y), val_size)
        idx = va if split == "val" else tr
        x, y = x[idx], y[idx]
    elif split == "val":  # no hold-out: validation is the test split (torchvision references)
        return load_arrays(name, "test", data, 0)
    return x, y, info.classes


# --------------------------------------------------------------------------------------------------
# Transforms (torchvision.transforms.v2)


@dataclass
class InputConfig:
    """How images are prepared for a model: size, channels, statistics, resize policy."""

    input_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    dataset: str | None = None  # the data set it was trained on, when known
    input_space: str = "RGB"  # "BGR": channels reversed, as Caffe models (BN-Inception) expect
    input_range: tuple[float, float] = (0.0, 1.0)  # (0, 255): pixel values not scaled to [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return dict(
            input_size=self.input_size, in_chans=self.in_chans, mean=list(self.mean), std=list(self.std),
            crop_pct=self.crop_pct, interpolation=self.interpolation, dataset=self.dataset,
            input_space=self.input_space, input_range=list(self.input_range),
        )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputConfig:
        return cls(
            int(d["input_size"]), int(d["in_chans"]), tuple(d["mean"]), tuple(d["std"]),
            float(d.get("crop_pct", 1.0)), str(d.get("interpolation", "bilinear")), d.get("dataset"),
            str(d.get("input_space") or "RGB"), tuple(d.get("input_range") or (0.0, 1.0)),
        )  # fmt: skip

    @classmethod
    def from_model(cls, model: Any, dataset: str | None = None) -> InputConfig:
        """What the model's ``default_cfg`` asks for (its weights' statistics, resize policy and input
        space: BGR / 0-255 for Caffe ports) at its default input size and its ``in_chans``."""
        cfg = model.default_cfg
        in_chans = int(model.in_chans)
        return cls(
            int(cfg["input_size"][2]), in_chans,
            channel_stats(cfg["mean"], in_chans), channel_stats(cfg["std"], in_chans),
            float(cfg.get("crop_pct", 1.0)), str(cfg.get("interpolation", "bilinear")), dataset,
            str(cfg.get("input_space") or "RGB"), tuple(cfg.get("input_range") or (0.0, 1.0)),
        )  # fmt: skip


def channel_stats(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """Per-channel mean or std for ``in_chans`` channels: as given when the count matches, else the
    channel average repeated (RGB statistics for a 1-channel model, a 1-channel data set's for RGB)."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    return (sum(values) / len(values),) * in_chans


def _interp(name: str) -> v2.InterpolationMode:
    from torchvision.transforms import v2

    return {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}.get(
        name, v2.InterpolationMode.BILINEAR
    )


def _repeat_channels(x: Tensor, target: int) -> Tensor:
    return x.expand(target, *x.shape[1:])


def _reverse_channels(x: Tensor) -> Tensor:
    return x.flip(-3)


def to_model_input(cfg: InputConfig) -> list[Callable[[Tensor], Tensor]]:
    """uint8 image -> what the weights expect: float in [0, 1] or [0, 255], RGB or BGR, normalized."""
    from torchvision.transforms import v2

    t: list[Callable[[Tensor], Tensor]] = [v2.ToDtype(torch.float32, scale=cfg.input_range[1] <= 1.0)]
    if cfg.input_space == "BGR":
        t.append(v2.Lambda(_reverse_channels))
    t.append(v2.Normalize(cfg.mean, cfg.std))
    return t


def _channels(in_chans: int, target: int) -> list[Callable[[Tensor], Tensor]]:
    from torchvision.transforms import v2

    if in_chans == target:
        return []
    if target == 1:
        return [v2.Grayscale(1)]
    if in_chans == 1:
        return [v2.Lambda(partial(_repeat_channels, target=target))]
    raise ValueError(f"cannot convert {in_chans}-channel images to {target} channels")


def train_transform(
    cfg: InputConfig,
    data_chans: int,
    native_size: int,
    *,
    hflip: bool = True,
    random_crop_pad: int = 0,
    random_resized_crop: bool = False,
    auto_augment: str | None = None,
    random_erase: float = 0.0,
) -> v2.Compose:
    """Training transform for uint8 CHW tensors: crop/resize, flips, policies, normalize, erasing."""
    from torchvision.transforms import v2

    t: list[Any] = [v2.ToImage()]
    if random_resized_crop:
        t.append(
            v2.RandomResizedCrop(cfg.input_size, interpolation=_interp(cfg.interpolation), antialias=True)
        )
    else:
        if native_size != cfg.input_size:
            t.append(v2.Resize(cfg.input_size, interpolation=_interp(cfg.interpolation), antialias=True))
        if random_crop_pad > 0:
            t.append(v2.RandomCrop(cfg.input_size, padding=random_crop_pad))
    if hflip:
        t.append(v2.RandomHorizontalFlip())
    if auto_augment == "trivial":
        t.append(v2.TrivialAugmentWide())
    elif auto_augment == "autoaugment":
        t.append(v2.AutoAugment())
    elif auto_augment not in (None, "none"):
        raise ValueError(f"unknown --auto-augment {auto_augment!r}; choose trivial, autoaugment or none")
    t += _channels(data_chans, cfg.in_chans)
    t += to_model_input(cfg)
    if random_erase > 0:
        t.append(v2.RandomErasing(p=random_erase, value=0))
    return v2.Compose(t)


class BatchAugment:
    """``collate_fn`` that augments a whole batch of in-memory uint8 images at once.

    The same augmentation as ``train_transform`` with ``random_crop_pad`` / ``hflip`` /
    ``random_erase`` (zero-filled pad-and-crop, horizontal flip, normalize, RandomErasing with
    torchvision's defaults: scale 0.02-0.33, ratio 0.3-3.3, value 0, 10 tries), drawn per image
    from the global torch RNG like the per-image transforms, but as a few tensor ops per batch
    instead of ~6 transform calls per image: on 28x28 images those calls cost ~0.2 ms/image, a
    fifth of a small model's training step on 2 cores. Only for images already at the input size
    with no resize, RandomResizedCrop or auto-augment policy (``applies`` says whether it does).
    ``augment`` draws on the input's device, so a GPU batch is augmented where it lies.
    """

    def __init__(
        self, cfg: InputConfig, data_chans: int, *, hflip: bool, random_crop_pad: int, random_erase: float
    ) -> None:
        if not self.applies(cfg, data_chans, cfg.input_size):
            raise ValueError(
                "BatchAugment needs RGB-ordered images at the input size with 1->1, 1->3 or 3->3 channels"
            )
        self.cfg, self.data_chans = cfg, data_chans
        self.hflip, self.pad, self.erase = hflip, random_crop_pad, random_erase
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1)

    @staticmethod
    def applies(
        cfg: InputConfig, data_chans: int, native_size: int, *, random_resized_crop: bool = False,
        auto_augment: str | None = None,
    ) -> bool:  # fmt: skip
        """Whether the batched ops reproduce ``train_transform`` with these settings."""
        same_chans = data_chans == cfg.in_chans or (data_chans == 1 and cfg.in_chans == 3)
        return (
            native_size == cfg.input_size and same_chans and cfg.input_space == "RGB"
            and cfg.input_range[1] <= 1.0 and not random_resized_crop and auto_augment in (None, "none")
        )  # fmt: skip

    def __call__(self, batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
        x = torch.stack([b[0] for b in batch])
        y = torch.tensor([int(b[1]) for b in batch], dtype=torch.int64)
        return self.augment(x), y

    def augment(self, x: Tensor) -> Tensor:
        """uint8 N x C x H x W -> normalized float32 N x in_chans x H x W, on x's device."""
        n, _, h, w = x.shape
        dev = x.device
        p = self.pad
        if p > 0:  # v2.RandomCrop(size, padding=p): zero pad, then a crop at a random offset in [0, 2p]
            xp = torch.nn.functional.pad(x, (p, p, p, p))
            top = torch.randint(0, 2 * p + 1, (n,), device=dev)
            left = torch.randint(0, 2 * p + 1, (n,), device=dev)
            rows = (top[:, None] + torch.arange(h, device=dev))[:, :, None]  # N x H x 1
            cols = (left[:, None] + torch.arange(w, device=dev))[:, None, :]  # N x 1 x W
            idx = torch.arange(n, device=dev)[:, None, None]
            x = xp[idx, :, rows, cols].permute(0, 3, 1, 2)  # N x C x H x W
        if self.hflip:
            x = torch.where((torch.rand(n, device=dev) < 0.5).view(n, 1, 1, 1), x.flip(-1), x)
        xf = x.float().div_(255)
        if self.data_chans == 1 and self.cfg.in_chans == 3:
            xf = xf.expand(n, 3, h, w)
        xf = (xf - self.mean.to(dev)) / self.std.to(dev)
        if self.erase > 0:
            xf = self._erase(xf)
        return xf.contiguous()

    def _erase(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        tries = 10
        area = torch.empty(n, tries, device=dev).uniform_(0.02, 0.33) * (h * w)
        log_r = torch.empty(n, tries, device=dev).uniform_(math.log(0.3), math.log(3.3))
        eh = torch.sqrt(area * log_r.exp()).round().long()
        ew = torch.sqrt(area / log_r.exp()).round().long()
        ok = (eh < h) & (ew < w)
        first = ok.float().argmax(1)  # the first try that fits, as torchvision's loop
        pick = torch.arange(n, device=dev)
        eh, ew = eh[pick, first], ew[pick, first]
        on = (torch.rand(n, device=dev) < self.erase) & ok.any(1)
        y0 = (torch.rand(n, device=dev) * (h - eh + 1)).long()
        x0 = (torch.rand(n, device=dev) * (w - ew + 1)).long()
        r = torch.arange(h, device=dev)[None, :]
        c = torch.arange(w, device=dev)[None, :]
        in_r = (r >= y0[:, None]) & (r < (y0 + eh)[:, None])  # N x H
        in_c = (c >= x0[:, None]) & (c < (x0 + ew)[:, None])  # N x W
        mask = on[:, None, None] & in_r[:, :, None] & in_c[:, None, :]
        return x.masked_fill(mask[:, None], 0.0)


def eval_transform(cfg: InputConfig, data_chans: int, native_size: int = 0) -> v2.Compose:
    """Resize (to input/crop_pct) + center crop, channel conversion, normalize."""
    from torchvision.transforms import v2

    t: list[Any] = [v2.ToImage()]
    if native_size != cfg.input_size:
        resize = int(round(cfg.input_size / cfg.crop_pct)) if cfg.crop_pct < 1 else cfg.input_size
        t.append(v2.Resize(resize, interpolation=_interp(cfg.interpolation), antialias=True))
        t.append(v2.CenterCrop(cfg.input_size))
    t += _channels(data_chans, cfg.in_chans)
    t += to_model_input(cfg)
    return v2.Compose(t)


# --------------------------------------------------------------------------------------------------
# Images from files


MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard: PIL raises beyond 2x this
MAX_IMAGE_BYTES = 256 * 2**20  # file-size guard, checked with stat before a file is read whole
_PIL_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL's own default
BACKGROUND = 255  # transparent pixels are shown over white, as a web page or a document shows them
# torchvision's IMG_EXTENSIONS and the other formats PIL reads that image folders hold
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm",
    ".tif", ".tiff", ".webp",
)  # fmt: skip

_NOTED: set[str] = set()  # the notes said once per process


def _note(msg: str, once: str | None = None) -> None:
    """One ``note: ...`` line on stderr, from the main process of rank 0 only (not from DataLoader
    workers or other DDP ranks); ``once``: a key, said once per process."""
    if once is not None:
        if once in _NOTED:
            return
        _NOTED.add(once)
    if torch.utils.data.get_worker_info() is not None or os.environ.get("RANK", "0") not in ("", "0"):
        return
    print(f"note: {msg}", file=sys.stderr)


def _read_image_bytes(p: Path) -> bytes:
    """The bytes of an image file, refusing folders, devices, FIFOs and files over MAX_IMAGE_BYTES
    (checked with stat first; then never more than one byte over the limit is read)."""

    def too_big(size: str) -> ImageReadError:
        return ImageReadError(
            f"cannot read image {p}: the file is {size}, over {MAX_IMAGE_BYTES / 2**20:.0f} MiB, the "
            "limit for one image (inceptionnet.data.MAX_IMAGE_BYTES); downscale or recompress it"
        )

    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(f"cannot read image {p}: it is a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"cannot read image {p}: not a regular file (a device, FIFO or socket)")
        if st.st_size > MAX_IMAGE_BYTES:
            raise too_big(f"{st.st_size / 2**20:,.0f} MiB")
        with open(p, "rb") as f:
            raw = f.read(st.st_size + 1)
            if len(raw) > st.st_size:  # it grew since stat, or stat does not know its size (/proc)
                raw += f.read(MAX_IMAGE_BYTES + 1 - len(raw))
    except ImageReadError:
        raise
    except OSError as e:
        if p.is_symlink() and not p.exists():
            raise ImageReadError(
                f"cannot read image {p}: a broken symbolic link (to {os.readlink(p)})"
            ) from None
        raise ImageReadError(f"cannot read image {p}: {e.strerror or e}") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise too_big("larger")
    if not raw:
        raise ImageReadError(f"cannot read image {p}: the file is empty")
    return raw


def read_image(path: str | os.PathLike[str], in_chans: int) -> Tensor:
    """A uint8 C x H x W tensor with ``in_chans`` channels from any image file PIL can read, as an
    image viewer shows it (``image_to_tensor``: EXIF orientation, the first frame of an animation,
    transparency over white, 16-bit and float images from their range).

    Anything unreadable raises ``ImageReadError`` naming the file: a missing, empty, damaged or
    unknown file, a folder, a file over ``MAX_IMAGE_BYTES`` or over ``MAX_IMAGE_PIXELS`` pixels.
    """
    p = Path(path)
    return decode_image(_read_image_bytes(p), in_chans, name=str(p))


def decode_image(raw: bytes, in_chans: int, name: str = "upload") -> Tensor:
    """``read_image`` on the bytes of an image file (an upload); errors name the image ``name``."""
    from PIL import Image, UnidentifiedImageError

    if Image.MAX_IMAGE_PIXELS == _PIL_MAX_IMAGE_PIXELS:  # ours, unless the user set their own
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    p = name
    if not raw:
        raise ImageReadError(f"cannot read image {p}: it is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # damaged metadata in a picture that decodes ("Corrupt EXIF data", "Tag data larger than
        # file"): viewers show the picture without a word, so do we (a warning would be 2 more lines)
        warnings.simplefilter("ignore", UserWarning)
        try:
            im: Image.Image = Image.open(io.BytesIO(raw))
            im.load()  # the first frame of an animation or a multi-page file
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageReadError(
                f"cannot read image {p}: too large, refused as a possible decompression bomb ({e})"
            ) from None
        except UnidentifiedImageError:
            raise ImageReadError(f"cannot read image {p}: not an image file PIL recognizes") from None
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError,
            # EOFError, struct.error, IndexError ... on damaged files: each is a damaged file here
            raise ImageReadError(
                f"cannot read image {p}: not a valid image ({first_line(e, limit=120)})"
            ) from None
        try:
            x = image_to_tensor(im, in_chans)
        except Exception as e:  # noqa: BLE001 - a mode or a damaged block that PIL cannot convert
            raise ImageReadError(
                f"cannot read image {p}: its {im.mode} pixels cannot be converted ({first_line(e, limit=120)})"
            ) from None
        if "animated" not in _NOTED and getattr(im, "is_animated", False):
            try:
                frames = f"{int(getattr(im, 'n_frames', 2))} frames"
            except Exception:  # noqa: BLE001 - a damaged later frame: the first one was read
                frames = "several frames"
            _note(f"{p} has {frames} (an animation or pages); the first frame is used, as for every "
                  "such file (said once)", once="animated")  # fmt: skip
    return x


def _has_transparency(im: Any) -> bool:
    palette = getattr(im, "palette", None)
    return bool(
        im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info
        or (im.mode == "P" and palette is not None and palette.mode == "RGBA")
    )  # fmt: skip


def _over_background(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 ``color`` (H x W or H x W x 3) with uint8 ``alpha`` composited over BACKGROUND."""
    a = alpha.astype(np.uint32)
    if color.ndim == 3:
        a = a[..., None]
    out = (color.astype(np.uint32) * a + BACKGROUND * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _integer_range(mode: str, tags: Any, arr: np.ndarray) -> tuple[float, float]:
    """The range an integer image's values are shown from: 16-bit modes 0-65535; a 32-bit ``I``
    image its declared TIFF depth (BitsPerSample <= 16, signed or not), else 0-65535 when its values
    fit (16-bit PNG / PGM data in a 32-bit container), else its own min..max (as viewers stretch
    32-bit data, which has no display range)."""
    if mode.startswith("I;16"):
        return (-32768.0, 32767.0) if mode.endswith("S") else (0.0, 65535.0)
    if tags is not None:
        bits_tag, format_tag = tags.get(258) or (32,), tags.get(339) or (1,)  # BitsPerSample, SampleFormat
        bits = int(bits_tag[0] if isinstance(bits_tag, tuple) else bits_tag)
        signed = int(format_tag[0] if isinstance(format_tag, tuple) else format_tag) == 2
        if bits <= 16:
            return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
        return float(arr.min()), float(arr.max())
    lo, hi = float(arr.min()), float(arr.max())
    return (0.0, 65535.0) if lo >= 0 and hi <= 65535 else (lo, hi)


def _deep_to_gray(im: Any, tags: Any = None) -> np.ndarray:
    """uint8 H x W from an ``I;16*``, ``I`` or ``F`` image, scaled from its range (not clipped):
    integers as ``_integer_range`` says, floats from 0-1 when their values lie in it (the float
    image convention), else from their own min..max; NaN shows as black, +-inf as the ends."""
    arr = np.asarray(im)
    if im.mode == "F":
        a = arr.astype(np.float64)
        finite = np.isfinite(a)
        vals = a[finite]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        if lo >= 0 and hi <= 1 or lo == hi:
            lo, hi = 0.0, 1.0
        a = np.where(np.isnan(a), lo, np.clip(a, lo, hi))
    else:
        a = arr.astype(np.float64)
        lo, hi = _integer_range(im.mode, tags, arr) if arr.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = min(lo, 0.0), max(hi, lo + 1.0)
        a = np.clip(a, lo, hi)
    gray = ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    t = im.info.get("transparency")
    if im.mode != "F" and isinstance(t, int):  # a 16-bit PNG's transparent gray level (tRNS)
        gray = _over_background(gray, np.where(arr == t, 0, 255).astype(np.uint8))
    return gray


def image_to_tensor(im: Any, in_chans: int) -> Tensor:
    """A loaded PIL image as an image viewer shows it, as a uint8 C x H x W tensor of ``in_chans``
    channels (1: gray, 3: RGB, others: the first of RGB repeated).

    - EXIF (or XMP) orientation is applied (``ImageOps.exif_transpose``; a damaged EXIF block is
      ignored, the picture shown as stored);
    - transparency (alpha in LA / RGBA / PA, premultiplied La / RGBa, a palette's or PNG's tRNS
      color) is composited over white (``BACKGROUND``): transparent pixels read as the page behind
      them, never as whatever color the encoder left under alpha 0;
    - ``I;16*``, ``I`` and ``F`` images are scaled from their range to 0-255 (``_deep_to_gray``);
    - every other mode (1, L, P, RGB, RGBX, CMYK, YCbCr, LAB, HSV) is converted by PIL.
    """
    from PIL import Image, ImageOps

    tags = getattr(im, "tag_v2", None)  # a TIFF's bits per sample: on the file's image, not on a copy
    with contextlib.suppress(Exception):  # a damaged EXIF block: shown as stored, as viewers do
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        im = Image.fromarray(_deep_to_gray(im, tags), "L")
    elif _has_transparency(im):
        gray = mode in ("1", "L", "La", "LA")
        arr = np.asarray(im.convert("LA" if gray else "RGBA"))  # straight (not premultiplied) alpha
        color = arr[..., 0] if gray else arr[..., :3]
        im = Image.fromarray(_over_background(color, arr[..., -1]), "L" if gray else "RGB")
    elif mode not in ("L", "RGB"):
        im = im.convert("L" if mode == "1" else "RGB")
    target = "L" if in_chans == 1 else "RGB"
    if im.mode != target:
        im = im.convert(target)
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if in_chans not in (1, 3):
        x = x[:1].expand(in_chans, -1, -1).clone()
    return x


def _examples(names: Sequence[str], k: int = 3) -> str:
    """``a, b, c`` or ``a, b, c and 4 more``."""
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _list_folder(d: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise DataNotFoundError(f"cannot list image folder {d}: {e.strerror or e}") from None


def _is_folder(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()  # follows symbolic links, as torchvision's find_classes and make_dataset
    except OSError:
        return False


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class _FolderScan:
    """What is in one split folder of an ImageFolder layout, and what was left out of it."""

    root: Path
    class_dirs: list[str]  # the folders directly in root, not hidden
    files: dict[str, list[str]]  # class folder -> its image files (in torchvision's order)
    hidden: list[str]  # names starting with '.', relative to root
    not_images: list[str]  # files without an image extension
    outside: list[str]  # image files directly in root, in no class folder
    repeated: list[str]  # folders already read through another path (symbolic link loops)

    def rel(self, path: str | Path) -> str:
        return os.path.relpath(path, self.root)

    def walk(self, cls: str) -> list[str]:
        """The image files under ``root/cls`` in torchvision's make_dataset order (folders by path,
        files by name, symbolic links followed), each real folder read once, hidden names skipped."""
        found: list[tuple[str, list[str]]] = []
        seen: set[tuple[int, int]] = set()
        stack = [self.root / cls]
        while stack:
            d = stack.pop()
            try:
                st = d.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                self.repeated.append(self.rel(d))
                continue
            seen.add((st.st_dev, st.st_ino))
            names = []
            for e in _list_folder(d):
                if e.name.startswith("."):
                    self.hidden.append(self.rel(e.path))
                elif _is_folder(e):
                    stack.append(Path(e.path))
                elif _is_image_name(e.name):
                    names.append(e.name)
                else:
                    self.not_images.append(self.rel(e.path))
            found.append((str(d), names))
        found.sort()
        return [os.path.join(d, n) for d, names in found for n in names]

    def ignored_note(self) -> str | None:
        """One line saying what was left out, or None."""
        parts = [
            f"{len(names)} {one if len(names) == 1 else many} ({_examples(names)})"
            for names, one, many in (
                (self.hidden, "hidden name", "hidden names"),
                (self.not_images, "file without an image extension", "files without an image extension"),
                (self.outside, "image outside the class folders", "images outside the class folders"),
                (self.repeated, "folder already read through a symbolic link (a loop)",
                 "folders already read through symbolic links (loops)"),
            )
            if names
        ]  # fmt: skip
        if not parts:
            return None
        total = len(self.hidden) + len(self.not_images) + len(self.outside) + len(self.repeated)
        return f"{self.root}: ignored {total} entries: {'; '.join(parts)}"


def _scan_folder(root: Path, classes: Sequence[str] | None) -> _FolderScan:
    """List ``root``'s class folders (all of them, or ``classes`` and any others holding images)."""
    scan = _FolderScan(root, [], {}, [], [], [], [])
    for e in _list_folder(root):
        if e.name.startswith("."):
            scan.hidden.append(e.name)
        elif _is_folder(e):
            scan.class_dirs.append(e.name)
        elif _is_image_name(e.name):
            scan.outside.append(e.name)
        else:
            scan.not_images.append(e.name)
    wanted = list(scan.class_dirs) if classes is None else sorted(set(classes) | set(scan.class_dirs))
    for c in wanted:
        scan.files[c] = scan.walk(c) if c in scan.class_dirs else []
    return scan


def _classes_source(root: Path, classes: Sequence[str]) -> str:
    """Where given classes come from, in words: the training folder next to ``root`` when its
    classes are these, else the model."""
    train = root.parent / "train"
    if train != root and train.is_dir():
        names = sorted(e.name for e in _list_folder(train) if not e.name.startswith(".") and _is_folder(e))
        if names == sorted(classes):
            return f"the training folder {train}"
    return "the model"


def _find_classes(scan: _FolderScan) -> list[str]:
    """The classes of a training split: every class folder, each holding at least one image file
    (torchvision's ImageFolder refuses empty class folders too: one would be a class no image
    teaches)."""
    root = scan.root
    where = f"expected {root}/CLASS/IMAGE, one folder per class"
    if not scan.class_dirs:
        if scan.outside:
            raise DataNotFoundError(
                f"image folder {root} holds {len(scan.outside)} images but no class folders; put them in "
                f"{root}/CLASS/ folders, one per class"
            )
        raise DataNotFoundError(f"image folder {root} has no class folders ({where})")
    if not any(scan.files.values()):
        other = (
            f"; it holds files without an image extension ({_examples(scan.not_images)})"
            if scan.not_images
            else ""
        )
        raise DataNotFoundError(
            f"image folder {root} holds no images: its {len(scan.class_dirs)} class folders "
            f"({_examples(scan.class_dirs)}) hold no image files (.jpg, .png, .gif, .webp, ...){other}"
        )
    empty = [c for c in scan.class_dirs if not scan.files[c]]
    if empty:
        raise DataNotFoundError(
            f"class folder{'s' if len(empty) > 1 else ''} {_examples([str(root / c) for c in empty])} "
            f"{'have' if len(empty) > 1 else 'has'} no images; add images or remove the folder (an empty "
            "class folder would be a class that no image teaches)"
        )
    return list(scan.class_dirs)


class ImageFolderFiles(Dataset[tuple[Tensor, int]]):
    """torchvision's ImageFolder layout (one folder per class) read through ``read_image``.

    Without ``classes`` (a training split), the classes are the folders in ``root``; one without
    images is refused (as torchvision's ``make_dataset`` does). With ``classes`` (a validation
    split, or the classes of a model), a folder holding images of another class is refused (they
    would be dropped), and classes without images here are named in a note. Hidden names
    (``.DS_Store``, ``.ipynb_checkpoints``), files without an image extension, images outside the
    class folders and folders reached twice through symbolic links are left out, in one note line
    (``notes=False``: no notes). ``classes_from`` says where ``classes`` come from, in messages
    (default: the ``train`` folder next to ``root`` when it has these classes, else the model).

    ``skip_bad=True`` drops unreadable files up front and counts them (``self.skipped``); otherwise
    the first unreadable file stops with its name.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        in_chans: int,
        transform: Callable[[Tensor], Tensor] | None = None,
        skip_bad: bool = False,
        classes: Sequence[str] | None = None,
        *,
        classes_from: str | None = None,
        notes: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"image folder {self.root} does not exist")
        scan = _scan_folder(self.root, classes)
        source = ""
        if classes is None:
            self.classes = _find_classes(scan)
        else:
            self.classes = list(classes)
            source = classes_from or _classes_source(self.root, self.classes)
            extra = {c: len(fs) for c, fs in scan.files.items() if c not in self.classes and fs}
            if extra:
                raise DataNotFoundError(
                    f"image folder {self.root} has classes that {source} does not have: "
                    f"{_examples([f'{c} ({n} images)' for c, n in extra.items()], 5)}; their images "
                    f"cannot be scored; remove them from {self.root} or train with them"
                )
        class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(f, class_to_idx[c]) for c in sorted(self.classes) for f in scan.files.get(c, [])]
        if not self.samples:
            raise DataNotFoundError(
                f"no images found in {self.root} (expected {self.root}/CLASS/*.jpg|png|...)"
            )
        self.in_chans = in_chans
        self.transform = transform
        self.skipped: list[str] = []
        if skip_bad:
            good = []
            for path, y in self.samples:
                try:
                    read_image(path, in_chans)
                    good.append((path, y))
                except ImageReadError:
                    self.skipped.append(path)
            self.samples = good
        counts = [0] * len(self.classes)
        for _, y in self.samples:
            counts[y] += 1
        left = [c for c, n in zip(self.classes, counts, strict=True) if n == 0]
        if left and classes is None:  # every image of these classes was unreadable
            raise DataNotFoundError(
                f"every image of class folder{'s' if len(left) > 1 else ''} "
                f"{_examples([str(self.root / c) for c in left])} is unreadable (--skip-bad-images "
                "skipped them); fix the files or remove the folder"
            )
        if notes:
            if left:
                _note(f"{self.root} has no images of {len(left)} of the {len(self.classes)} classes of "
                      f"{source}: {_examples(left, 5)}; they are left out of its scores")  # fmt: skip
            ignored = scan.ignored_note()
            if ignored:
                _note(ignored)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, y = self.samples[i]
        x = read_image(path, self.in_chans)
        if self.transform is not None:
            x = self.transform(x)
        return x, y


def imagefolder_root(data: str | None, split: str) -> Path:
    """``DATA/split`` (``test`` falls back to ``val``), or one error naming what is missing."""
    if data is None:
        raise DataNotFoundError(
            "--dataset imagefolder needs --data DIR with train/ and val/ folders of class folders"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    base = Path(data).expanduser()
    layout = f"expected {data}/train/CLASS/IMAGE and {data}/val/CLASS/IMAGE"
    if not base.is_dir():
        if base.exists():
            raise DataNotFoundError(
                f"--data {data} is a file, not a folder ({layout}; extract an archive first)"
            )
        raise DataNotFoundError(f"--data {data} does not exist ({layout})")
    root = base / split
    if split == "test" and not (root.exists() or root.is_symlink()):
        root = base / "val"
    if root.is_dir():
        return root
    if root.is_symlink() and not root.exists():
        raise DataNotFoundError(
            f"image folder {root} is a broken symbolic link or a link loop (to {os.readlink(root)})"
        )
    if root.exists():
        raise DataNotFoundError(f"image folder {root} is a file, not a folder ({layout})")
    here = sorted(e.name for e in _list_folder(base) if not e.name.startswith(".") and _is_folder(e))
    hint = f"; {data} holds the folders {_examples(here, 5)}" if here else ""
    if here and "train" not in here and "val" not in here:
        hint += " (is it a split folder itself? then pass its parent folder)"
    raise DataNotFoundError(f"image folder {root} does not exist ({layout}){hint}")


def dataset_info(name: str, data: str | None = None) -> DataInfo:
    """Channels, native size, statistics and classes of a data set (imagefolder: ImageNet stats, RGB)."""
    check_dataset_name(name)
    if name == "imagefolder":
        root = imagefolder_root(data, "train")
        classes = tuple(_find_classes(_scan_folder(root, None)))
        return DataInfo("imagefolder", 3, 0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), classes, True)
    return INFO[name]
