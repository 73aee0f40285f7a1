"""Inception-v4 — "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"
(Szegedy, Ioffe, Vanhoucke & Alemi, AAAI 2017), Figure 9.

timm-compatible: the module layout is timm's ``inception_v4.py`` (Cadene's port of the TF-slim model
that Google released with the weights), so a timm state_dict loads with ``strict=True`` and gives the
same outputs (42,679,816 parameters at 1000 classes). timm keeps the whole trunk in one
``features`` Sequential; the blocks sit at these indices:

======  ==================================================  ================
index   block (paper figure)                                output (299 px)
======  ==================================================  ================
0-2     stem convs 3x3/2 V, 3x3 V, 3x3 (Figure 3)           64 x 147 x 147
3       Mixed3a: 3x3/2 max pool | 3x3/2 conv                160 x 73 x 73
4       Mixed4a: 1x1 -> 3x3 V | 1x1 -> 7x1 -> 1x7 -> 3x3 V  192 x 71 x 71
5       Mixed5a: 3x3/2 conv | 3x3/2 max pool                384 x 35 x 35
6-9     4 x Inception-A (Figure 4)                          384 x 35 x 35
10      Reduction-A (Figure 7; k, l, m, n = 192, 224, 256, 384)  1024 x 17 x 17
11-17   7 x Inception-B (Figure 5)                          1024 x 17 x 17
18      Reduction-B (Figure 8)                              1536 x 8 x 8
19-21   3 x Inception-C (Figure 6)                          1536 x 8 x 8
======  ==================================================  ================

then global average pooling, dropout, ``last_linear``. Convs are conv + BN (eps 1e-3) + ReLU, "V"
marks valid (unpadded) convs as in the paper. In-block average pools do not count the padding
(timm's ``count_include_pad=False``). Where the figures and the released model differ (the order
of factorized 1x7 / 7x1 convs), the released model is followed: its weights need it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ._registry import register_model
from ._weights import WeightEntry, register_weights
from .layers import (
    INCEPTION_MEAN,
    INCEPTION_STD,
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
    "InceptionB",
    "InceptionC",
    "InceptionV4",
    "Mixed3a",
    "Mixed4a",
    "Mixed5a",
    "ReductionA",
    "ReductionB",
    "inception_v4",
]


def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Mixed3a(nn.Module):
    """Stem, first split (Figure 3): 3x3/2 max pool | 3x3/2 conv 96, both valid."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = conv_layer(64, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.maxpool(x), self.conv(x)), 1)


class Mixed4a(nn.Module):
    """Stem, second split (Figure 3): 1x1 64 -> 3x3 96 V | 1x1 64 -> 1x7 64 -> 7x1 64 -> 3x3 96 V."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(
            conv_layer(160, 64, kernel_size=1),
            conv_layer(64, 96, kernel_size=3),
        )
        self.branch1 = nn.Sequential(
            conv_layer(160, 64, kernel_size=1),
            conv_layer(64, 64, kernel_size=(1, 7), padding=(0, 3)),
            conv_layer(64, 64, kernel_size=(7, 1), padding=(3, 0)),
            conv_layer(64, 96, kernel_size=(3, 3)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x)), 1)


class Mixed5a(nn.Module):
    """Stem, third split (Figure 3): 3x3/2 conv 192 V | 3x3/2 max pool V."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.conv = conv_layer(192, 192, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.conv(x), self.maxpool(x)), 1)


class InceptionA(nn.Module):
    """35x35 block (Figure 4): 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 96."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = conv_layer(384, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(384, 64, kernel_size=1),
            conv_layer(64, 96, kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            conv_layer(384, 64, kernel_size=1),
            conv_layer(64, 96, kernel_size=3, padding=1),
            conv_layer(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(_avg_pool(), conv_layer(384, 96, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class ReductionA(nn.Module):
    """35x35 -> 17x17 (Figure 7, k=192, l=224, m=256, n=384): 3x3/2 n V | 1x1 k -> 3x3 l -> 3x3/2 m V |
    3x3/2 max pool V."""

    def __init__(
        self,
        in_channels: int = 384,
        k: int = 192,
        l: int = 224,  # noqa: E741 (the paper's name)
        m: int = 256,
        n: int = 384,
        *,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        self.out_channels = n + m + in_channels
        self.branch0 = conv_layer(in_channels, n, kernel_size=3, stride=2)
        self.branch1 = nn.Sequential(
            conv_layer(in_channels, k, kernel_size=1),
            conv_layer(k, l, kernel_size=3, padding=1),
            conv_layer(l, m, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class InceptionB(nn.Module):
    """17x17 block (Figure 5): 1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 |
    1x1 192 -> 7x1 192 -> 1x7 224 -> 7x1 224 -> 1x7 256 | avg -> 1x1 128."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = conv_layer(1024, 384, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(1024, 192, kernel_size=1),
            conv_layer(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            conv_layer(224, 256, kernel_size=(7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            conv_layer(1024, 192, kernel_size=1),
            conv_layer(192, 192, kernel_size=(7, 1), padding=(3, 0)),
            conv_layer(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            conv_layer(224, 224, kernel_size=(7, 1), padding=(3, 0)),
            conv_layer(224, 256, kernel_size=(1, 7), padding=(0, 3)),
        )
        self.branch3 = nn.Sequential(_avg_pool(), conv_layer(1024, 128, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class ReductionB(nn.Module):
    """17x17 -> 8x8 (Figure 8): 1x1 192 -> 3x3/2 192 V | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320 V |
    3x3/2 max pool V."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(
            conv_layer(1024, 192, kernel_size=1),
            conv_layer(192, 192, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            conv_layer(1024, 256, kernel_size=1),
            conv_layer(256, 256, kernel_size=(1, 7), padding=(0, 3)),
            conv_layer(256, 320, kernel_size=(7, 1), padding=(3, 0)),
            conv_layer(320, 320, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class InceptionC(nn.Module):
    """8x8 block (Figure 6): 1x1 256 | 1x1 384 -> (1x3 256, 3x1 256) |
    1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3 256, 3x1 256) | avg -> 1x1 256."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = conv_layer(1536, 256, kernel_size=1)

        self.branch1_0 = conv_layer(1536, 384, kernel_size=1)
        self.branch1_1a = conv_layer(384, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch1_1b = conv_layer(384, 256, kernel_size=(3, 1), padding=(1, 0))

        self.branch2_0 = conv_layer(1536, 384, kernel_size=1)
        self.branch2_1 = conv_layer(384, 448, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_2 = conv_layer(448, 512, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3a = conv_layer(512, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3b = conv_layer(512, 256, kernel_size=(3, 1), padding=(1, 0))

        self.branch3 = nn.Sequential(_avg_pool(), conv_layer(1536, 256, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.branch0(x)
        x1_0 = self.branch1_0(x)
        x1 = torch.cat((self.branch1_1a(x1_0), self.branch1_1b(x1_0)), 1)
        x2_2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        x2 = torch.cat((self.branch2_3a(x2_2), self.branch2_3b(x2_2)), 1)
        x3 = self.branch3(x)
        return torch.cat((x0, x1, x2, x3), 1)


def _min_side(h: int) -> int:
    """The side after Reduction-B: it needs 3x3 at the 17x17 stage (75 for 299-style stems)."""
    n = spatial_out(spatial_out(h, 3, 2), 3)  # features.0, features.1 (features.2 is padded)
    n = spatial_out(spatial_out(spatial_out(n, 3, 2), 3), 3, 2)  # Mixed3a, Mixed4a, Mixed5a
    return spatial_out(spatial_out(n, 3, 2), 3, 2)  # Reduction-A, Reduction-B


class InceptionV4(InceptionBase):
    """Inception-v4 with timm's module names.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        drop_rate: dropout before the classifier (paper: keep probability 0.8, so 0.2; timm's
            default 0.0; either way nothing changes in eval mode).
        bn_eps: BatchNorm eps (TensorFlow: 1e-3).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``).
    """

    _pool_attr = "global_pool"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        drop_rate: float = 0.2,
        bn_eps: float = 1e-3,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        conv = partial(ConvBNAct, bn_eps=bn_eps)

        self.features = nn.Sequential(
            # stem (Figure 3). N x 3 x 299 x 299
            conv(in_chans, 32, kernel_size=3, stride=2),
            # N x 32 x 149 x 149
            conv(32, 32, kernel_size=3),
            # N x 32 x 147 x 147
            conv(32, 64, kernel_size=3, padding=1),
            # N x 64 x 147 x 147
            Mixed3a(conv_layer=conv),
            # N x 160 x 73 x 73
            Mixed4a(conv_layer=conv),
            # N x 192 x 71 x 71
            Mixed5a(conv_layer=conv),
            # N x 384 x 35 x 35
            *[InceptionA(conv_layer=conv) for _ in range(4)],
            # N x 384 x 35 x 35
            ReductionA(conv_layer=conv),  # Mixed_6a
            # N x 1024 x 17 x 17
            *[InceptionB(conv_layer=conv) for _ in range(7)],
            # N x 1024 x 17 x 17
            ReductionB(conv_layer=conv),  # Mixed_7a
            # N x 1536 x 8 x 8
            *[InceptionC(conv_layer=conv) for _ in range(3)],
            # N x 1536 x 8 x 8
        )
        self.num_features = self.head_hidden_size = 1536
        self.global_pool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.head_drop = nn.Dropout(p=drop_rate)
        self.last_linear = make_classifier(self.num_features, num_classes)

        init_weights(self, "kaiming")
        self.min_input_size = min_input_size(_min_side)
        self.min_aux_input_size = self.min_input_size
        self.default_cfg = make_cfg(
            in_chans, num_classes, 299, mean=INCEPTION_MEAN, std=INCEPTION_STD,
            interpolation="bicubic", crop_pct=0.875, min_input_size=self.min_input_size,
            first_conv="features.0.conv", classifier="last_linear",
        )  # fmt: skip
        # feature stages as timm's inception_v4: the stem's padded conv and Mixed3a, the last Inception-A,
        # -B and -C blocks
        self.init_stages(
            [f"features.{i}" for i in range(len(self.features))],
            [("features.2", 64, 2), ("features.3", 160, 4), ("features.9", 384, 8), ("features.17", 1024, 16),
             ("features.21", 1536, 32)],
        )  # fmt: skip

    def feature_side(self, h: int) -> int:
        return _min_side(h)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        # N x 3 x 299 x 299 -> N x 1536 x 8 x 8
        return self.features(x), []

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._pool_flatten(self.global_pool(x))
        # N x 1536
        x = self.head_drop(x)
        return x if pre_logits else self.last_linear(x)

    def _reset_heads(self, num_classes: int) -> None:
        self.last_linear = make_classifier(self.num_features, num_classes)


@register_model
def inception_v4(**kwargs: Any) -> InceptionV4:
    """timm-compatible Inception-v4 (42,679,816 params at 1000 classes)."""
    return InceptionV4(**kwargs)


# --------------------------------------------------------------------------------------------------
# Weights

register_weights(WeightEntry(
    model="inception_v4", tag="tf_in1k",
    url="https://huggingface.co/timm/inception_v4.tf_in1k/resolve/main/model.safetensors",
    filename="timm-inception_v4.tf_in1k.safetensors",
    input_size=(3, 299, 299), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    interpolation="bicubic", crop_pct=0.875,
    accuracy={"imagenet1k_top1": 80.062, "imagenet1k_top5": 94.926},
    params=42679816, gmacs=12.254,
    source="timm hub id timm/inception_v4.tf_in1k (TF-slim weights); accuracy of this port as "
    "measured by pretrainedmodels (TF-slim reports 80.2 / 95.2)",
))  # fmt: skip
