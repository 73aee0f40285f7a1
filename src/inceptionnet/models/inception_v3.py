"""Inception v3 — "Rethinking the Inception Architecture for Computer Vision" (Szegedy et al., CVPR 2016).

torchvision-compatible: module names, channel counts and every deviation are torchvision's
``inception.py`` (itself the published TensorFlow model), so a torchvision state_dict loads with
``strict=True`` and gives the same outputs (27,161,264 parameters with the aux head, 23,834,568
without). The paper's Table 1 in these names:

* stem: Conv2d_1a_3x3 (3x3/2), Conv2d_2a_3x3, Conv2d_2b_3x3 (padded), maxpool1 (3x3/2),
  Conv2d_3b_1x1, Conv2d_4a_3x3, maxpool2 (3x3/2) -> 35x35x192 (Table 1 lists 3x3 convs of 80 and
  192 channels, the second with stride 2, where the released model has a 1x1 conv, a 3x3 conv and
  a max pool);
* 3 x Inception-A (Figure 5; the released model keeps a 1x1 -> 5x5 branch beside the factorized
  double-3x3 one), Mixed_5b/5c/5d, 35x35;
* grid reduction Mixed_6a (Figure 10), 17x17;
* 4 x Inception-C (Figure 6, 1x7/7x1 factorization, 7x7 channels 128/160/160/192),
  Mixed_6b..6e;
* the auxiliary classifier on Mixed_6e (Figure 8, BN in the aux head: "BN-auxiliary");
* grid reduction Mixed_7a, 8x8;
* 2 x Inception-E (Figure 7, expanded 1x3/3x1 outputs), Mixed_7b/7c, 8x8x2048;
* average pool, dropout, fc.

Pooling inside the blocks is torchvision's: 3x3/1 average pools counting the zero padding.
``fid_inception_v3`` is the same topology with the 2015 TensorFlow graph's pooling (named flags
``pool_exclude_pad``, ``last_max_pool``) and 1008 classes: the FID network of pytorch-fid,
torch-fidelity and clean-fid, its state_dict key-for-key pytorch-fid's.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ._registry import register_model
from ._weights import WeightEntry, register_weights
from .layers import (
    ConvBNAct,
    ConvLayer,
    InceptionBase,
    init_weights,
    make_cfg,
    make_classifier,
    make_global_pool,
    min_input_size,
    spatial_out,
)

__all__ = [
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionV3",
    "fid_inception_v3",
    "inception_v3",
]


POOLS = ("avg", "avg_exclude_pad", "max")


def _branch_pool(x: Tensor, pool: str) -> Tensor:
    """The 3x3/1 pool of a block's pooling branch: torchvision's average counting the zero padding
    ("avg"), TensorFlow's average over the valid pixels only ("avg_exclude_pad"), or a max pool."""
    if pool == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=pool == "avg")


def _check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise UsageError(f"pool={pool!r}: expected one of {', '.join(POOLS)}")
    return pool


class InceptionA(nn.Module):
    """35x35 module (paper Figure 5): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(
        self, in_channels: int, pool_features: int, *, conv_layer: ConvLayer = ConvBNAct, pool: str = "avg"
    ) -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        self.branch1x1 = conv_layer(in_channels, 64, kernel_size=1)

        self.branch5x5_1 = conv_layer(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv_layer(48, 64, kernel_size=5, padding=2)

        self.branch3x3dbl_1 = conv_layer(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_layer(96, 96, kernel_size=3, padding=1)

        self.branch_pool = conv_layer(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction (Mixed_6a, paper Figure 10): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool."""

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch3x3 = conv_layer(in_channels, 384, kernel_size=3, stride=2)

        self.branch3x3dbl_1 = conv_layer(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_layer(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17x17 module (paper Figure 6, n=7): 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 |
    avg pool -> 1x1."""

    def __init__(
        self, in_channels: int, channels_7x7: int, *, conv_layer: ConvLayer = ConvBNAct, pool: str = "avg"
    ) -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        c7 = channels_7x7
        self.branch1x1 = conv_layer(in_channels, 192, kernel_size=1)

        self.branch7x7_1 = conv_layer(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = conv_layer(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = conv_layer(c7, 192, kernel_size=(7, 1), padding=(3, 0))

        self.branch7x7dbl_1 = conv_layer(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv_layer(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv_layer(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv_layer(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv_layer(c7, 192, kernel_size=(1, 7), padding=(0, 3))

        self.branch_pool = conv_layer(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        branch7x7dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(branch7x7dbl))
        branch7x7dbl = self.branch7x7dbl_5(self.branch7x7dbl_4(branch7x7dbl))
        branch_pool = self.branch_pool(_branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction (Mixed_7a): 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool."""

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch3x3_1 = conv_layer(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv_layer(192, 320, kernel_size=3, stride=2)

        self.branch7x7x3_1 = conv_layer(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv_layer(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_layer(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_layer(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(branch7x7x3))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks (paper Figure 7): 1x1 | 1x1 -> (1x3, 3x1) |
    1x1 -> 3x3 -> (1x3, 3x1) | avg pool -> 1x1."""

    def __init__(self, in_channels: int, *, conv_layer: ConvLayer = ConvBNAct, pool: str = "avg") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        self.branch1x1 = conv_layer(in_channels, 320, kernel_size=1)

        self.branch3x3_1 = conv_layer(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv_layer(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = conv_layer(384, 384, kernel_size=(3, 1), padding=(1, 0))

        self.branch3x3dbl_1 = conv_layer(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv_layer(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv_layer(384, 384, kernel_size=(3, 1), padding=(1, 0))

        self.branch_pool = conv_layer(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], 1)
        branch_pool = self.branch_pool(_branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e (paper Figure 8): 5x5/3 avg pool, 1x1 conv 128, 5x5 conv 768,
    fc. Needs a 17x17 input (a 299x299 image) so that the 5x5 conv has a 5x5 field."""

    def __init__(self, in_channels: int, num_classes: int, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.conv0 = conv_layer(in_channels, 128, kernel_size=1)
        self.conv1 = conv_layer(128, 768, kernel_size=5)
        self.fc = make_classifier(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # N x 768 x 17 x 17
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))
        # N x 768 x 1 x 1
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        # N x 768
        return self.fc(x)


def _stage6_side(h: int) -> int:
    """The side at the 17x17 stage (Mixed_6a to 6e)."""
    n = spatial_out(spatial_out(h, 3, 2), 3)  # Conv2d_1a_3x3, Conv2d_2a_3x3
    n = spatial_out(
        spatial_out(n, 3, 2), 3
    )  # maxpool1, Conv2d_4a_3x3 (Conv2d_2b and Conv2d_3b keep the size)
    return spatial_out(spatial_out(n, 3, 2), 3, 2)  # maxpool2, Mixed_6a


def _final_side(h: int) -> int:
    """The side at the 8x8 stage (Mixed_7a to 7c)."""
    return spatial_out(_stage6_side(h), 3, 2)


def _min_sizes() -> tuple[int, int]:
    """Smallest square inputs for the main network (Mixed_7a needs 3x3) and for the aux head
    (its 5x5/3 pool then 5x5 conv need 17x17 at Mixed_6e)."""
    main = min_input_size(_final_side)
    aux = min_input_size(lambda h: spatial_out(spatial_out(_stage6_side(h), 5, 3), 5))
    return main, aux


class InceptionV3(InceptionBase):
    """Inception v3 with torchvision's module names and defaults.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        aux_logits: build the aux head (``AuxLogits``; paper and torchvision: yes; here off by default,
            and computed only with ``return_aux=True``).
        transform_input: torchvision's re-normalization from ImageNet mean/std to (0.5, 0.5) (the
            torchvision weights need it; their entry sets it).
        drop_rate: dropout before the classifier (torchvision: 0.5; the paper does not give one).
        bn_eps: BatchNorm eps (TensorFlow/torchvision: 1e-3).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``).
        pool_exclude_pad: the pooling branches of Mixed_5b-5d, 6b-6e and 7b (7c too unless
            ``last_max_pool``) average over the valid pixels only, as TensorFlow's ``AvgPool`` with
            ``padding='SAME'`` does (the 2015 TF graph's value: True; torchvision: False).
        last_max_pool: Mixed_7c's pooling branch is a 3x3/1 max pool (the 2015 TF graph, the FID
            network: True, ``mixed_10/tower_2/pool`` is a ``MaxPool``; torchvision and the paper: False,
            an average pool).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        aux_logits: bool = False,
        transform_input: bool = False,
        drop_rate: float = 0.5,
        bn_eps: float = 1e-3,
        global_pool: str = "avg",
        pool_exclude_pad: bool = False,
        last_max_pool: bool = False,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise UsageError("transform_input=True needs in_chans=3 (it re-normalizes RGB channels)")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.pool_exclude_pad = pool_exclude_pad
        self.last_max_pool = last_max_pool
        conv = partial(ConvBNAct, bn_eps=bn_eps)
        pool = "avg_exclude_pad" if pool_exclude_pad else "avg"
        pool_7c = "max" if last_max_pool else pool

        # N x 3 x 299 x 299
        self.Conv2d_1a_3x3 = conv(in_chans, 32, kernel_size=3, stride=2)
        # N x 32 x 149 x 149
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        # N x 32 x 147 x 147
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        # N x 64 x 147 x 147
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        # N x 64 x 73 x 73
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        # N x 80 x 73 x 73
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        # N x 192 x 71 x 71
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        # N x 192 x 35 x 35
        self.Mixed_5b = InceptionA(192, pool_features=32, conv_layer=conv, pool=pool)
        # N x 256 x 35 x 35
        self.Mixed_5c = InceptionA(256, pool_features=64, conv_layer=conv, pool=pool)
        # N x 288 x 35 x 35
        self.Mixed_5d = InceptionA(288, pool_features=64, conv_layer=conv, pool=pool)
        # N x 288 x 35 x 35
        self.Mixed_6a = InceptionB(288, conv_layer=conv)
        # N x 768 x 17 x 17
        self.Mixed_6b = InceptionC(768, channels_7x7=128, conv_layer=conv, pool=pool)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, conv_layer=conv, pool=pool)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, conv_layer=conv, pool=pool)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, conv_layer=conv, pool=pool)
        # N x 768 x 17 x 17
        self.AuxLogits: InceptionAux | None = (
            InceptionAux(768, num_classes, conv_layer=conv) if aux_logits else None
        )
        self.Mixed_7a = InceptionD(768, conv_layer=conv)
        # N x 1280 x 8 x 8
        self.Mixed_7b = InceptionE(1280, conv_layer=conv, pool=pool)
        # N x 2048 x 8 x 8
        self.Mixed_7c = InceptionE(2048, conv_layer=conv, pool=pool_7c)
        # N x 2048 x 8 x 8
        self.num_features = self.head_hidden_size = 2048
        self.avgpool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.dropout = nn.Dropout(p=drop_rate)
        self.fc = make_classifier(self.num_features, num_classes)

        self._init_weights()
        self.min_input_size, self.min_aux_input_size = _min_sizes()
        if not aux_logits:
            self.min_aux_input_size = self.min_input_size
        self.default_cfg = make_cfg(
            in_chans, num_classes, 299, crop_pct=0.875, min_input_size=self.min_input_size,
            first_conv="Conv2d_1a_3x3.conv", classifier="fc",
            aux_classifiers=("AuxLogits.fc",) if aux_logits else (), aux_modules=("AuxLogits",),
        )  # fmt: skip
        # feature stages as timm's inception_v3 (the last module at each stride)
        self.init_stages(
            ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
             "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
             "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"],
            [("Conv2d_2b_3x3", 64, 2), ("Conv2d_4a_3x3", 192, 4), ("Mixed_5d", 288, 8), ("Mixed_6e", 768, 16),
             ("Mixed_7c", 2048, 32)],
            aux_taps={"Mixed_6e": "AuxLogits"},
        )  # fmt: skip

    def _init_weights(self) -> None:
        # torchvision's: truncated normal std 0.1 (aux fc 0.001; its "0.01" for the aux 5x5 conv sits on
        # the wrapper module, not the conv, so it never applies), BN at (1, 0)
        stds: dict[nn.Module, float] = {}
        if self.AuxLogits is not None and isinstance(self.AuxLogits.fc, nn.Linear):
            stds[self.AuxLogits.fc] = 0.001
        init_weights(self, "trunc_normal", std=0.1, bound=2.0, stds=stds)

    @property
    def has_aux(self) -> bool:
        return self.aux_logits

    def feature_side(self, h: int) -> int:
        return _final_side(h)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        aux: list[Tensor] = []
        x = self._transform_input(x)
        # N x 3 x 299 x 299
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        # N x 64 x 147 x 147
        x = self.maxpool1(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        # N x 192 x 71 x 71
        x = self.maxpool2(x)
        # N x 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        # N x 288 x 35 x 35
        x = self.Mixed_6a(x)
        # N x 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        # N x 768 x 17 x 17
        if with_aux and self.AuxLogits is not None:
            aux.append(self.AuxLogits(x))
        x = self.Mixed_7a(x)
        # N x 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))
        # N x 2048 x 8 x 8
        return x, aux

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._pool_flatten(self.avgpool(x))
        # N x 2048
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)

    def _reset_heads(self, num_classes: int) -> None:
        self.fc = make_classifier(self.num_features, num_classes)
        if self.AuxLogits is not None:
            self.AuxLogits.fc = make_classifier(768, num_classes)


@register_model
def inception_v3(**kwargs: Any) -> InceptionV3:
    """torchvision-compatible Inception v3 (23,834,568 params at 1000 classes; 27,161,264 with aux)."""
    return InceptionV3(**kwargs)


@register_model
def fid_inception_v3(**kwargs: Any) -> InceptionV3:
    """The FID network: TensorFlow's 2015 Inception v3 graph (``inception-2015-12-05.tgz``) as ported
    by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``; torch-fidelity and clean-fid use the same
    graph). 23,850,960 params at 1008 classes; the state_dict is key-for-key pytorch-fid's
    ``fid_inception_v3()``.

    Its deviations from :func:`inception_v3`, as the TF graph has them:

    * ``num_classes=1008`` (the TF graph's softmax, 1000 classes plus 8 unused);
    * ``pool_exclude_pad=True``: the pooling branches of Mixed_5b-5d, 6b-6e and 7b average over the
      valid pixels only (TF ``AvgPool``, ``padding='SAME'``; ``count_include_pad=False``);
    * ``last_max_pool=True``: Mixed_7c's pooling branch is a 3x3/1 **max** pool;
    * ``transform_input=False``: the input is in [-1, 1] (``2 * x - 1`` of an image in [0, 1]);
    * BN eps 1e-3, as in the TF graph and torchvision.
    """
    kwargs.setdefault("num_classes", 1008)
    kwargs.setdefault("pool_exclude_pad", True)
    kwargs.setdefault("last_max_pool", True)
    return InceptionV3(**kwargs)


# --------------------------------------------------------------------------------------------------
# Weights

register_weights(WeightEntry(
    model="inception_v3", tag="imagenet1k_v1",
    url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    filename="inception_v3_google-0cc3c7bd.pth", sha256="0cc3c7bd",
    input_size=(3, 299, 299), crop_pct=299 / 342,
    accuracy={"imagenet1k_top1": 77.294, "imagenet1k_top5": 93.450},
    params=27161264, gmacs=5.713, model_kwargs={"transform_input": True},
    source="torchvision Inception_V3_Weights.IMAGENET1K_V1 (ported from TensorFlow); the file holds the "
    "AuxLogits head, loaded with aux_logits=True and skipped otherwise",
))  # fmt: skip

register_weights(WeightEntry(
    model="fid_inception_v3", tag="tf_2015_12_05",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    filename="pt_inception-2015-12-05-6726825d.pth", sha256="6726825d", num_classes=1008,
    input_size=(3, 299, 299), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0,
    params=23850960,
    source="pytorch-fid's port of TensorFlow's inception-2015-12-05.tgz, the FID network (pool3 features "
    "of this file are what FID, IS and KID are reported with)",
))  # fmt: skip
