"""GoogLeNet / Inception v1 — "Going deeper with convolutions" (Szegedy et al., CVPR 2015).

Three registered variants share one ``Inception`` block and one ``GoogLeNet`` class:

* ``googlenet``: torchvision-compatible (same module names, same deviations from the paper, so a
  torchvision state_dict loads with ``strict=True`` and gives the same outputs): BN after every
  conv (eps 1e-3), a 3x3 conv in the "5x5" branch, 2x2 ``maxpool4``, dropout 0.2, aux heads with
  adaptive 4x4 pooling.
* ``googlenet_paper``: the network of the paper's Table 1: real 5x5 convs, local response
  normalization in the stem, conv biases and no BN, 3x3/2 ``maxpool4``, dropout 0.4, aux heads =
  5x5/3 average pool, 1x1 conv 128, fc 1024, ReLU, dropout 0.7, fc.
* ``googlenet_small``: for 28x28 / 32x32 inputs (Fashion-MNIST, CIFAR): a 3x3 stem without early
  downsampling (as the well-known CIFAR versions; ``stem_stride=2`` for 4x less compute), the same
  Inception stages, a ``width`` multiplier.

Block names follow the paper's table and torchvision: conv1, maxpool1, conv2, conv3, maxpool2,
inception3a, inception3b, maxpool3, inception4a..e, maxpool4, inception5a, inception5b, avgpool,
dropout, fc; aux heads aux1 (on inception4a) and aux2 (on inception4d).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import INFO as DATA_INFO
from ..errors import UsageError
from ._registry import register_model
from ._weights import WeightEntry, register_weights
from .layers import (
    ACTS,
    POOLS,
    ConvBNAct,
    ConvLayer,
    InceptionBase,
    check_choice,
    init_weights,
    make_cfg,
    make_classifier,
    make_global_pool,
    min_input_size,
    spatial_out,
)

__all__ = ["GoogLeNet", "Inception", "InceptionAux", "googlenet", "googlenet_paper", "googlenet_small"]

BRANCH5X5 = ("3x3", "5x5", "3x3x2")
STEMS = ("imagenet", "paper", "small")


class Inception(nn.Module):
    """The Inception module (paper Fig. 2b): 1x1 | 1x1->3x3 | 1x1->5x5 | pool->1x1, concatenated.

    ``branch5x5``: "5x5" as in the paper; "3x3" is torchvision's deviation (its weights need it);
    "3x3x2" is the Inception-v2 factorization (two 3x3 convs see the same 5x5 field).
    ``pool``: "max" as in the paper, or "avg" (an ablation).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv_layer: ConvLayer = ConvBNAct,
        branch5x5: str = "3x3",
        pool: str = "max",
    ) -> None:
        super().__init__()
        check_choice("branch5x5", branch5x5, BRANCH5X5)
        check_choice("pool", pool, POOLS)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = conv_layer(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_layer(in_channels, ch3x3red, kernel_size=1),
            conv_layer(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        if branch5x5 == "5x5":
            wide: list[nn.Module] = [conv_layer(ch5x5red, ch5x5, kernel_size=5, padding=2)]
        elif branch5x5 == "3x3":
            wide = [conv_layer(ch5x5red, ch5x5, kernel_size=3, padding=1)]
        else:
            wide = [
                conv_layer(ch5x5red, ch5x5, kernel_size=3, padding=1),
                conv_layer(ch5x5, ch5x5, kernel_size=3, padding=1),
            ]
        self.branch3 = nn.Sequential(conv_layer(in_channels, ch5x5red, kernel_size=1), *wide)
        pool_layer: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)
            if pool == "max"
            # count_include_pad=False: border pixels are averaged over real pixels only
            else nn.AvgPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True, count_include_pad=False)
        )
        self.branch4 = nn.Sequential(pool_layer, conv_layer(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on inception4a / inception4d (paper section 5).

    ``paper_pool=True``: 5x5 average pool with stride 3 as in the paper (4x4 output at 14x14 input);
    otherwise torchvision's adaptive 4x4 average pool (works at any input size).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        conv_layer: ConvLayer = ConvBNAct,
        conv_channels: int = 128,
        fc_channels: int = 1024,
        dropout: float = 0.7,
        paper_pool: bool = False,
    ) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv_layer(in_channels, conv_channels, kernel_size=1)
        self.fc1 = nn.Linear(conv_channels * 4 * 4, fc_channels)
        self.fc2 = make_classifier(fc_channels, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        # aux1: N x 512 x 14 x 14, aux2: N x 528 x 14 x 14 (224 input)
        if self.paper_pool:
            # 5x5/3 gives 4x4 at the paper's 14x14; the adaptive pool only matters at other sizes
            x = F.adaptive_avg_pool2d(F.avg_pool2d(x, kernel_size=5, stride=3), (4, 4))
        else:
            x = F.adaptive_avg_pool2d(x, (4, 4))
        # N x C x 4 x 4
        x = self.conv(x)
        # N x 128 x 4 x 4
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        # N x 1024
        return self.fc2(x)


def _pool(n: int, k: int = 3) -> int:
    return spatial_out(n, k, 2, ceil_mode=True)


def _stage4_side(h: int, stem: str, stem_stride: int) -> int:
    """The side at the 14x14 stage (inception4a..e) for an ``h`` x ``h`` input."""
    if stem == "small":
        s = spatial_out(h, 3, stem_stride, 1)  # conv1; no stem pools
    else:
        s = _pool(_pool(spatial_out(h, 7, 2, 3)))  # conv1, maxpool1, maxpool2
    return _pool(s)  # maxpool3


def _min_size(stem: str, stem_stride: int, maxpool4_kernel: int, aux_pool: int) -> int:
    """Smallest square input every pooling layer can take (stride-2 ceil-mode pools), and with
    ``aux_pool`` the aux heads' pool at the 14x14 stage."""

    def side(h: int) -> int:
        s4 = _stage4_side(h, stem, stem_stride)
        return min(s4 - max(1, aux_pool) + 1, _pool(s4, maxpool4_kernel))

    return min_input_size(side)


class GoogLeNet(InceptionBase):
    """GoogLeNet. The defaults are torchvision's; see the registered variants for the paper's.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        stem: "imagenet" (7x7/2 conv, 3x3/2 max pools; torchvision), "paper" (the same with the
            paper's two LocalResponseNorms) or "small" (3x3 convs, no pooling; 28/32 px inputs).
        stem_stride: stride of conv1 in the "small" stem (1: no early downsampling).
        width: channel multiplier (paper: 1.0); channels are rounded and kept >= 8.
        aux_logits: build the two aux heads (paper: yes; they run only with ``return_aux=True``).
        transform_input: torchvision's re-normalization from ImageNet mean/std to (0.5, 0.5).
        norm: "bn" (torchvision, v2 onwards) or "none" (paper: conv with bias).
        act: "relu" (paper), "leaky_relu", "elu", "tanh", "silu".
        pool: in-block pooling branch, "max" (paper) or "avg".
        branch5x5: "5x5" (paper), "3x3" (torchvision) or "3x3x2" (v2 factorization).
        maxpool4_kernel: 3 (paper, 3x3/2) or 2 (torchvision's 2x2/2).
        dropout: before the classifier (paper: 0.4; torchvision: 0.2).
        dropout_aux: in the aux heads (paper and torchvision: 0.7).
        aux_paper_pool: aux heads pool 5x5/3 as the paper (True) or adaptive 4x4 (torchvision).
        bn_eps: BatchNorm eps (torchvision: 1e-3).
        init: "trunc_normal" (torchvision: std 0.01) or "kaiming" (trains without BN, too).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        stem: str = "imagenet",
        stem_stride: int = 1,
        width: float = 1.0,
        aux_logits: bool = False,
        transform_input: bool = False,
        norm: str = "bn",
        act: str = "relu",
        pool: str = "max",
        branch5x5: str = "3x3",
        maxpool4_kernel: int = 2,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        aux_paper_pool: bool = False,
        bn_eps: float = 1e-3,
        init: str = "trunc_normal",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        check_choice("act", act, ACTS)
        check_choice("init", init, ("trunc_normal", "kaiming"))
        if stem_stride not in (1, 2):
            raise UsageError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if not 0 < width <= 64:  # also NaN; 64: layers of up to 65536 channels already
            raise UsageError(f"width must be positive and finite (at most 64), got {width!r}")
        if transform_input and in_chans != 3:
            raise UsageError("transform_input=True needs in_chans=3 (it re-normalizes RGB channels)")
        if maxpool4_kernel not in (2, 3):
            raise UsageError(f"maxpool4_kernel must be 2 or 3, got {maxpool4_kernel!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.transform_input = transform_input
        self.aux_logits = aux_logits
        self.stem, self.stem_stride, self.maxpool4_kernel = stem, stem_stride, maxpool4_kernel

        def c(ch: int) -> int:
            return ch if width == 1.0 else max(8, int(round(ch * width)))

        conv = partial(ConvBNAct, norm=norm, act=act, bn_eps=bn_eps)
        blk: dict[str, Any] = dict(conv_layer=conv, branch5x5=branch5x5, pool=pool)

        # Stem. "imagenet"/"paper": N x 3 x 224 x 224 -> N x 192 x 28 x 28
        if stem == "small":
            self.conv1 = conv(in_chans, c(64), kernel_size=3, stride=stem_stride, padding=1)
            self.maxpool1: nn.Module = nn.Identity()
        else:
            self.conv1 = conv(in_chans, c(64), kernel_size=7, stride=2, padding=3)
            # N x 64 x 112 x 112
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # N x 64 x 56 x 56
        self.lrn1: nn.Module = (
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if stem == "paper" else nn.Identity()
        )
        self.conv2 = conv(c(64), c(64), kernel_size=1)
        self.conv3 = conv(c(64), c(192), kernel_size=3, padding=1)
        # N x 192 x 56 x 56
        self.lrn2: nn.Module = (
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75) if stem == "paper" else nn.Identity()
        )
        self.maxpool2: nn.Module = (
            nn.Identity() if stem == "small" else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        )
        # N x 192 x 28 x 28 (small stem: the input size / stem_stride)

        #                          in    #1x1    #3x3r   #3x3    #5x5r  #5x5    pool proj
        self.inception3a = Inception(c(192), c(64), c(96), c(128), c(16), c(32), c(32), **blk)
        self.inception3b = Inception(
            self.inception3a.out_channels, c(128), c(128), c(192), c(32), c(96), c(64), **blk
        )
        # N x 480 x 28 x 28
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # N x 480 x 14 x 14
        self.inception4a = Inception(
            self.inception3b.out_channels, c(192), c(96), c(208), c(16), c(48), c(64), **blk
        )
        self.inception4b = Inception(
            self.inception4a.out_channels, c(160), c(112), c(224), c(24), c(64), c(64), **blk
        )
        self.inception4c = Inception(
            self.inception4b.out_channels, c(128), c(128), c(256), c(24), c(64), c(64), **blk
        )
        self.inception4d = Inception(
            self.inception4c.out_channels, c(112), c(144), c(288), c(32), c(64), c(64), **blk
        )
        self.inception4e = Inception(
            self.inception4d.out_channels, c(256), c(160), c(320), c(32), c(128), c(128), **blk
        )
        # N x 832 x 14 x 14
        self.maxpool4 = nn.MaxPool2d(maxpool4_kernel, stride=2, ceil_mode=True)
        # N x 832 x 7 x 7
        self.inception5a = Inception(
            self.inception4e.out_channels, c(256), c(160), c(320), c(32), c(128), c(128), **blk
        )
        self.inception5b = Inception(
            self.inception5a.out_channels, c(384), c(192), c(384), c(48), c(128), c(128), **blk
        )
        # N x 1024 x 7 x 7
        self.num_features = self.head_hidden_size = self.inception5b.out_channels

        if aux_logits:
            aux = partial(
                InceptionAux, num_classes=num_classes, conv_layer=conv, conv_channels=c(128),
                fc_channels=c(1024), dropout=dropout_aux, paper_pool=aux_paper_pool,
            )  # fmt: skip
            self.aux1: InceptionAux | None = aux(self.inception4a.out_channels)
            self.aux2: InceptionAux | None = aux(self.inception4d.out_channels)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.dropout = nn.Dropout(p=dropout)
        self.fc = make_classifier(self.num_features, num_classes)

        check_choice("init", init, ("trunc_normal", "kaiming"))
        init_weights(self, init, std=0.01, linear=False)  # kaiming: convs only, linears keep PyTorch's

        self.min_input_size = _min_size(stem, stem_stride, maxpool4_kernel, aux_pool=0)
        # the paper's aux pooling (5x5/3) needs 5 pixels at the 14x14 stage
        self.min_aux_input_size = _min_size(
            stem, stem_stride, maxpool4_kernel, aux_pool=5 if aux_logits and aux_paper_pool else 0
        )
        self.default_cfg = make_cfg(
            in_chans, num_classes, 28 if stem == "small" else 224,
            min_input_size=self.min_input_size,
            classifier="fc", aux_classifiers=("aux1.fc2", "aux2.fc2") if aux_logits else (),
            aux_modules=("aux1", "aux2"),  # a checkpoint with aux heads loads into a model without them
        )  # fmt: skip
        # feature stages (timm convention: the last module at each stride); the paper stem's stride-4
        # stage ends with its LRN
        r = (2, 4, 8) if stem != "small" else (stem_stride,) * 3
        self.init_stages(
            ["conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2", "inception3a", "inception3b",
             "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
             "inception5a", "inception5b"],
            [("conv1", c(64), r[0]), ("lrn2" if stem == "paper" else "conv3", c(192), r[1]),
             ("inception3b", self.inception3b.out_channels, r[2]),
             ("inception4e", self.inception4e.out_channels, 2 * r[2]),
             ("inception5b", self.num_features, 4 * r[2])],
            aux_taps={"inception4a": "aux1", "inception4d": "aux2"},
        )  # fmt: skip

    @property
    def has_aux(self) -> bool:
        return self.aux_logits

    def feature_side(self, h: int) -> int:
        return _pool(_stage4_side(h, self.stem, self.stem_stride), self.maxpool4_kernel)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        aux: list[Tensor] = []
        x = self._transform_input(x)
        # N x 3 x 224 x 224
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x)
        # N x 64 x 56 x 56
        x = self.conv3(self.conv2(x))
        x = self.lrn2(x)
        x = self.maxpool2(x)
        # N x 192 x 28 x 28
        x = self.inception3b(self.inception3a(x))
        # N x 480 x 28 x 28
        x = self.maxpool3(x)
        x = self.inception4a(x)
        # N x 512 x 14 x 14
        if with_aux and self.aux1 is not None:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        # N x 528 x 14 x 14
        if with_aux and self.aux2 is not None:
            aux.append(self.aux2(x))
        x = self.inception4e(x)
        # N x 832 x 14 x 14
        x = self.maxpool4(x)
        x = self.inception5b(self.inception5a(x))
        # N x 1024 x 7 x 7
        return x, aux

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._pool_flatten(self.avgpool(x))
        # N x 1024
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)

    def _reset_heads(self, num_classes: int) -> None:
        self.fc = make_classifier(self.num_features, num_classes)
        for head in (self.aux1, self.aux2):
            if head is not None:
                head.fc2 = make_classifier(head.fc1.out_features, num_classes)


@register_model
def googlenet(**kwargs: Any) -> GoogLeNet:
    """torchvision-compatible GoogLeNet (6,624,904 params at 1000 classes; 13,004,888 with aux heads)."""
    return GoogLeNet(**kwargs)


@register_model
def googlenet_paper(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet as published (Table 1): 5x5 convs, LRN, biases and no BN, dropout 0.4, aux heads."""
    cfg: dict[str, Any] = dict(
        stem="paper", norm="none", branch5x5="5x5", maxpool4_kernel=3, dropout=0.4,
        dropout_aux=0.7, aux_paper_pool=True, aux_logits=True, init="kaiming",
    )  # fmt: skip
    cfg.update(kwargs)
    return GoogLeNet(**cfg)


@register_model
def googlenet_small(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet for 28x28 / 32x32 inputs: 3x3 stem, no early downsampling, ``width`` multiplier.

    Defaults: width 1.0, stem_stride 1, BN, the "5x5" branch as two 3x3 (v2 factorization, as in the
    common CIFAR versions), 3x3/2 ``maxpool4``, dropout 0.2, no aux heads.
    """
    cfg: dict[str, Any] = dict(
        stem="small", branch5x5="3x3x2", maxpool4_kernel=3, init="kaiming", bn_eps=1e-5,
    )  # fmt: skip
    cfg.update(kwargs)
    return GoogLeNet(**cfg)


# --------------------------------------------------------------------------------------------------
# Analysis hints: plain data that inceptionnet.analysis reads (summary --depth 2, --table1, --bottleneck);
# this module imports nothing from it.

# "Going deeper with convolutions", Table 1: the published params (K = 1024 weights, no biases)
# and ops (M = 10^6 multiply-adds) per row, keyed by our module names (conv2 covers conv2 + conv3,
# the paper's "convolution 3x3/1" row with a 64-channel reduce).
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "conv1": (2.7, 34),
    "conv2": (112, 360),
    "inception3a": (159, 128),
    "inception3b": (380, 304),
    "inception4a": (364, 73),
    "inception4b": (437, 88),
    "inception4c": (463, 100),
    "inception4d": (580, 119),
    "inception4e": (840, 170),
    "inception5a": (1072, 54),
    "inception5b": (1388, 71),
    "fc": (1000, 1),
}

ANALYSIS_HINTS: dict[str, Any] = {
    "family": "GoogLeNet",
    # each Inception block's layers -> the paper's Table 1 columns; the "... reduce" layers are the
    # 1x1 reductions (--bottleneck: the block without them)
    "blocks": {
        Inception: {
            "branch1": "#1x1",
            "branch2.0": "#3x3 reduce",
            "branch2.1": "#3x3",
            "branch3.0": "#5x5 reduce",
            "branch3.1": "#5x5",
            "branch3.2": "#5x5 (2nd 3x3)",
            "branch4.0": "pool",
            "branch4.1": "pool proj",
        },
    },
    "table1": {
        "models": ("googlenet", "googlenet_paper"),
        "requires": ("maxpool1",),  # googlenet_small's stem has no pools: not the paper's network
        "figures": PAPER_TABLE1,
        "figures_setup": ([3, 224, 224], 1000),  # input and classes the published figures are for
        "figures_note": "paper params / ops: the published figures (Szegedy et al. 2015, Table 1); "
        "docs/TABLE1.md explains the differences",
        # one paper row for several modules, with their columns: "convolution 3x3/1" with its reduce
        "merged": {"conv2": {"conv2": "#3x3 reduce", "conv3": "#3x3"}},
        "block_type": "inception",  # a block's row reads "inception (3a)"
        "block_depth": 2,
        "unit_example": "inception (3a) 163,328 = 159.5K",
        "notes": [
            "the paper's LRN layers (after maxpool1 and conv3 in googlenet_paper) have no parameters and "
            "no ops, and are not rows of its table",
        ],
        # a column whose layer has another kernel in this model: what that means
        "kernel_notes": {
            "#5x5": "this model's '#5x5' branch is a 3x3 conv (torchvision's GoogLeNet), so its counts differ",
        },
    },
}


# --------------------------------------------------------------------------------------------------
# Weights

register_weights(WeightEntry(
    model="googlenet", tag="imagenet1k_v1",
    url="https://download.pytorch.org/models/googlenet-1378be20.pth", filename="googlenet-1378be20.pth",
    sha256="1378be20", accuracy={"imagenet1k_top1": 69.778, "imagenet1k_top5": 89.530},
    params=6624904, gmacs=1.498, model_kwargs={"transform_input": True},
    source="torchvision GoogLeNet_Weights.IMAGENET1K_V1 (ported from TensorFlow)",
))  # fmt: skip


_FM = DATA_INFO["fashion_mnist"]  # the training data's normalization and class names


register_weights(WeightEntry(
    model="googlenet_small", tag="fashion_mnist",
    url=None, filename="googlenet_small-fashion_mnist-9c8a2da6.safetensors", sha256="9c8a2da61c53d2379019ab713fb798d319f0269330a6ffa134de1bfe2532d4e0",
    num_classes=10, input_size=(1, 28, 28), mean=_FM.mean, std=_FM.std, crop_pct=1.0,
    accuracy={"fashion_mnist_test_top1": 94.99, "fashion_mnist_test_top5": 99.97},
    params=399346, model_kwargs={"width": 0.25, "stem_stride": 1}, classes=_FM.classes,
    source="trained by this project: inceptionnet train --recipe fashion_mnist (docs/RESULTS.md); "
    "shipped inside the package",
))  # fmt: skip
