"""Data sets by name, their transforms, and image files for prediction.

Data sets: ``fashion_mnist`` (idx files), ``digits`` (sklearn's bundled 8x8 digits, for tests),
``cifar10`` (local python batches, read without unpickling arbitrary objects), ``imagefolder``
(``train/`` and ``val/`` folders of the user's own images).

A data set root is looked for in this order: ``--data PATH`` -> ``$INCEPTIONNET_DATA`` ->
``~/.cache/inceptionnet`` -> system copies (Debian's ``dataset-fashion-mnist``) -> a torchvision
download where a network exists.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import warnings
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


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataNotFoundError(f"cannot read {path}: {e}; the file is damaged, fetch it again") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataNotFoundError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataNotFoundError(f"{path} is truncated: {data.size} values for shape {dims}")
    return data.reshape(dims)


def load_fashion_mnist(split: str, data: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images N x 28 x 28 and int64 labels of the official ``train`` (60k) or ``test`` (10k) split."""
    tried = []
    for root in candidate_roots("fashion_mnist", data):
        img, lbl = (_find_file(root, s) for s in FMNIST_FILES[split])
        if img and lbl:
            return torch.from_numpy(_read_idx(img).copy()), torch.from_numpy(_read_idx(lbl).astype(np.int64))
        tried.append(str(root))
    downloaded = _try_torchvision_download(split) if data is None else None
    if downloaded is not None:
        return downloaded
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
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch (unsafe)")


def load_cifar10(split: str, data: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images N x 3 x 32 x 32 and labels from the python batches (cifar-10-batches-py)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    tried = []
    for root in candidate_roots("cifar10", data):
        for base in (root, root / "cifar-10-batches-py"):
            if all((base / n).is_file() for n in names):
                xs, ys = [], []
                for n in names:
                    with open(base / n, "rb") as f:
                        try:
                            d = _CifarUnpickler(f, encoding="bytes").load()
                        except (pickle.UnpicklingError, EOFError, ValueError) as e:
                            raise DataNotFoundError(f"cannot read CIFAR-10 batch {base / n}: {e}") from None
                    xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    ys.append(np.asarray(d[b"labels"], dtype=np.int64))
                return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
        tried.append(str(root))
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
_PIL_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # PIL's own default


def read_image(path: str | os.PathLike[str], in_chans: int) -> Tensor:
    """A uint8 C x H x W tensor with ``in_chans`` channels from any image file PIL can read.

    16-bit, palette, CMYK, alpha and grayscale images are converted; anything unreadable raises
    ``ImageReadError`` naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    if Image.MAX_IMAGE_PIXELS == _PIL_MAX_IMAGE_PIXELS:  # ours, unless the user set their own
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ImageReadError(f"cannot read image {p}: {e.strerror or e}") from None
    if not raw:
        raise ImageReadError(f"cannot read image {p}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(raw))
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(
            f"cannot read image {p}: too large, refused as a possible decompression bomb ({e})"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read image {p}: not an image file PIL recognizes") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"cannot read image {p}: not a valid image ({first_line(e, limit=120)})"
        ) from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        im = Image.fromarray((np.clip(arr / hi, 0, 1) * 255).round().astype(np.uint8), mode="L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), mode="L")
    target = "L" if in_chans == 1 else "RGB"
    if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1", "LAB", "HSV") or im.mode != target:
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        im = im.convert(target)
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if in_chans not in (1, 3):
        x = x[:1].expand(in_chans, -1, -1).clone()
    return x


class ImageFolderFiles(Dataset[tuple[Tensor, int]]):
    """torchvision's ImageFolder layout (one folder per class) read through ``read_image``.

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
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"image folder {self.root} does not exist")
        if classes is None:
            try:
                self.classes, class_to_idx = find_classes(str(self.root))
            except FileNotFoundError as e:
                raise DataNotFoundError(f"image folder {self.root}: {e}") from None
        else:
            self.classes = list(classes)
            class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = make_dataset(str(self.root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
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

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, y = self.samples[i]
        x = read_image(path, self.in_chans)
        if self.transform is not None:
            x = self.transform(x)
        return x, y


def imagefolder_root(data: str | None, split: str) -> Path:
    if data is None:
        raise DataNotFoundError(
            "--dataset imagefolder needs --data DIR with train/ and val/ folders of class folders"
        )
    sub = {"train": "train", "val": "val", "test": "test"}[split]
    root = Path(data).expanduser() / sub
    if split == "test" and not root.is_dir():
        root = Path(data).expanduser() / "val"
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist (expected {data}/train and {data}/val)")
    return root


def dataset_info(name: str, data: str | None = None) -> DataInfo:
    """Channels, native size, statistics and classes of a data set (imagefolder: ImageNet stats, RGB)."""
    check_dataset_name(name)
    if name == "imagefolder":
        classes = tuple(ImageFolderFiles(imagefolder_root(data, "train"), 3).classes)
        return DataInfo("imagefolder", 3, 0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), classes, True)
    return INFO[name]
