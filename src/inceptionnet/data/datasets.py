"""Data sets by name: their facts (``DataInfo``), readers, splits, and ImageFolder scanning.

Data sets: ``fashion_mnist`` (idx files), ``digits`` (sklearn's bundled 8x8 digits, for tests),
``cifar10`` (local python batches, read without unpickling arbitrary objects), ``imagefolder``
(``train/`` and ``val/`` folders of the user's own images).

A data set root is looked for in this order: ``--data PATH`` -> ``$INCEPTIONNET_DATA`` ->
``~/.cache/inceptionnet`` -> system copies (Debian's ``dataset-fashion-mnist``) -> a torchvision
download where a network exists.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataNotFoundError, ImageReadError, UsageError, first_line
from .images import IMAGE_EXTENSIONS, _note, read_image
from .transforms import resize_target

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
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


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
        raise UsageError(f"--val-split must be between 0 and {n - 1}, got {val_size}")
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
# ImageFolder: the user's own images, one folder per class


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


def folder_images(
    folder: str | os.PathLike[str], *, recursive: bool = False, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """The image files of ``folder`` by name (``extensions``, with or without the dot), sorted;
    ``recursive``: its sub-folders too, symbolic links followed, each real folder read once.

    Nothing unreadable is left out without a word: an entry named as an image that is not a regular
    file (a FIFO, socket or device, a broken link, a link loop) is kept, so that ``read_image`` names
    it in its one error line (from ``stat``: a FIFO is never opened, which would block); a sub-folder
    that cannot be listed or is reached again through a link gets one ``warning:`` line naming it."""
    exts = tuple("." + e.lower().lstrip(".") for e in extensions)
    root = Path(folder)
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
            entries = _list_folder(d)
        except (OSError, DataNotFoundError) as err:
            if d == root:
                raise
            why = err.strerror if isinstance(err, OSError) else first_line(err)
            _warn(f"{d}: {why}; its images are left out")
            continue
        if (st.st_dev, st.st_ino) in seen:
            _warn(f"{d}: a folder already read through another path (a symbolic link loop); read once")
            continue
        seen.add((st.st_dev, st.st_ino))
        for e in entries:
            if recursive and _is_folder(e):
                stack.append(Path(e.path))
            elif e.name.lower().endswith(exts) and not _is_folder(e):
                found.append(Path(e.path))
    return sorted(found)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


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
        self._resize = resize_target(transform)  # checked from each image's header (check_image_size)
        self.skipped: list[str] = []
        if skip_bad:
            good = []
            for path, y in self.samples:
                try:
                    read_image(path, in_chans, resize_to=self._resize)
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
        x = read_image(path, self.in_chans, resize_to=self._resize)
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
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
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
