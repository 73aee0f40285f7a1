"""Transforms (torchvision.transforms.v2, loaded on first use): the train and eval transform
builders, ``to_model_input`` (uint8 -> what the weights expect), and ``BatchAugment``, the same
training augmentation as a few tensor ops per batch; test-time augmentation (``TTA_MODES``,
``tta_transform``, ``tta_views``: the views ``train.engine.make_tta`` averages over). Every resize
is a ``BoundedResize``: its output size goes through ``images.check_image_size`` before it is made, and
``resize_target(transform)`` tells a reader the resize to check from an image's header.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import UsageError
from .config import InputConfig
from .images import ImageLimits, ResizeTo, check_image_size

if TYPE_CHECKING:  # torchvision loads on first use: `import inceptionnet.data` stays light
    from torchvision.transforms import v2


def _interp(name: str) -> v2.InterpolationMode:
    from torchvision.transforms import v2

    return {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}.get(
        name, v2.InterpolationMode.BILINEAR
    )


class BoundedResize:
    """torchvision's ``Resize(size, antialias=True)``, refusing (``ImageTooLargeError``) an image whose
    resize would be larger than ``limits`` allow (``check_image_size``) before anything is allocated: a
    1 x 100,000 strip resized to a short side of 32 would be 3.2 M pixels long."""

    def __init__(
        self, size: ResizeTo, interpolation: str = "bilinear", limits: ImageLimits | None = None
    ) -> None:
        self.size, self.interpolation, self.limits = size, interpolation, limits

    def __call__(self, x: Tensor) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        h, w = int(x.shape[-2]), int(x.shape[-1])
        check_image_size(w, h, resize_to=self.size, limits=self.limits)
        size = [self.size] if isinstance(self.size, int) else list(self.size)
        return TF.resize(x, size, interpolation=_interp(self.interpolation), antialias=True)

    def __repr__(self) -> str:
        return f"BoundedResize(size={self.size}, interpolation={self.interpolation})"


def resize_target(transform: Any) -> ResizeTo | None:
    """The first resize a transform (a ``v2.Compose`` or one transform) makes, for ``read_image(...,
    resize_to=)`` to check from the image's header; None when it resizes nothing."""
    for t in getattr(transform, "transforms", [transform]):
        if isinstance(t, BoundedResize):
            return t.size
    return None


def eval_resize(cfg: InputConfig) -> int:
    """The short side ``eval_transform`` resizes to before its center crop (input / crop_pct)."""
    return int(round(cfg.input_size / cfg.crop_pct)) if cfg.crop_pct < 1 else cfg.input_size


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
    raise UsageError(f"cannot convert {in_chans}-channel images to {target} channels")


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
            t.append(BoundedResize(cfg.input_size, cfg.interpolation))
        if random_crop_pad > 0:
            t.append(v2.RandomCrop(cfg.input_size, padding=random_crop_pad))
    if hflip:
        t.append(v2.RandomHorizontalFlip())
    if auto_augment == "trivial":
        t.append(v2.TrivialAugmentWide())
    elif auto_augment == "autoaugment":
        t.append(v2.AutoAugment())
    elif auto_augment not in (None, "none"):
        raise UsageError(f"unknown --auto-augment {auto_augment!r}; choose trivial, autoaugment or none")
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
        t.append(BoundedResize(eval_resize(cfg), cfg.interpolation))
        t.append(v2.CenterCrop(cfg.input_size))
    t += _channels(data_chans, cfg.in_chans)
    t += to_model_input(cfg)
    return v2.Compose(t)


# --------------------------------------------------------------------------------------------------
# Test-time augmentation: several views of each image, cut from the batch

TTA_MODES = ("none", "flip", "10crop", "144crop")


def tta_transform(cfg: InputConfig, data_chans: int, *, square: bool = False) -> v2.Compose:
    """The per-image transform under TTA: channel conversion and normalization only, since the views
    are cut from the whole image at its own size (``tta_views``). ``square``: first resize to a square
    at 144crop's largest scale, so images of mixed sizes (an image folder) can be batched."""
    from torchvision.transforms import v2

    t: list[Any] = [v2.ToImage(), *_channels(data_chans, cfg.in_chans), *to_model_input(cfg)]
    if square:
        side = cfg.input_size * 352 // 224  # 144crop's 352
        t.insert(0, BoundedResize((side, side)))
    return v2.Compose(t)


def tta_views(x: Tensor, mode: str, size: int) -> list[Tensor]:
    """The views of a batch N x C x H x W for ``mode`` (one of ``TTA_MODES``), each N x C x size x size.

    ``flip``: the center view and its mirror; ``10crop``: 4 corners + center, and their mirrors, from
    the image resized to size/0.875; ``144crop``, the GoogLeNet paper's protocol: 4 scales (shorter
    side 256, 288, 320, 352 for a 224 input) x 3 squares (left/center/right or top/center/bottom) x
    6 crops (4 corners, center, the whole square resized) x 2 mirrors."""
    from torchvision.transforms.v2 import functional as TF

    if mode == "none":
        return [
            x
            if x.shape[-1] == size and x.shape[-2] == size
            else TF.center_crop(TF.resize(x, size, antialias=True), size)
        ]
    if mode == "flip":
        base = tta_views(x, "none", size)[0]
        return [base, base.flip(-1)]
    if mode == "10crop":
        big = TF.resize(x, int(round(size / 0.875)), antialias=True)
        crops = list(TF.five_crop(big, size))
        return crops + [c.flip(-1) for c in crops]
    if mode == "144crop":
        views = []
        for scale in (256, 288, 320, 352):
            for sq in _thirds(TF.resize(x, int(round(size * scale / 224)), antialias=True)):
                crops = [*TF.five_crop(sq, size), TF.resize(sq, [size, size], antialias=True)]
                views += crops + [c.flip(-1) for c in crops]
        return views
    raise UsageError(f"unknown --tta {mode!r}; choose one of {', '.join(TTA_MODES)}")


def _thirds(img: Tensor) -> list[Tensor]:
    """The 3 squares along the longer side: left, center, right (or top, center, bottom)."""
    h, w = img.shape[-2:]
    side = min(h, w)
    if w >= h:
        return [
            img[..., :, :side],
            img[..., :, (w - side) // 2 : (w - side) // 2 + side],
            img[..., :, w - side :],
        ]
    return [
        img[..., :side, :],
        img[..., (h - side) // 2 : (h - side) // 2 + side, :],
        img[..., h - side :, :],
    ]


# --------------------------------------------------------------------------------------------------
# Images from files
