"""BN-Inception / Inception v2 — "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift" (Ioffe & Szegedy, ICML 2015), the network of its Figure 5 (appendix).

What follows which source:

* The layer table (channels of every branch, average vs max pooling per block, stride-2 blocks 3c
  and 4e with a max-pool pass-through, no pooling layers between blocks, three 28x28 modules, each
  5x5 conv replaced by two 3x3, BN after every conv, no dropout) is the paper's Figure 5. The
  published Caffe model (Yuanjun Xiong's port, redistributed as ``bninception`` by the
  ``pretrainedmodels`` package) has exactly these channels, so its weights load
  (11,295,240 parameters at 1000 classes).
* Where the paper and the Caffe model differ, the default is the Caffe model (its weights need it)
  and the paper's choice is a flag: the first 7x7 conv is a plain conv (paper: a depthwise-separable
  conv with depth multiplier 8, ``stem_separable=True``); convs keep a bias before BN (paper: the
  bias is redundant under BN, ``conv_bias=False``); BN eps 1e-5 (Caffe's default).
* Pooling as in Caffe: max pools with ``ceil_mode=True``; in-block average pools count the padding
  (``count_include_pad=True``). In blocks 3c and 4e the stride-2 max-pool pass-through pads one
  ``-inf`` row and column at the bottom/right before the 3x3/2 ceil-mode pool: identical to Caffe's
  pool at even sizes (224 input: 28 -> 14 -> 7), and the same output size as the stride-2 convs
  beside it at odd sizes, where the Caffe model cannot concatenate.
* Global average pooling is adaptive (Caffe: a fixed 7x7 pool; the same at 224x224).

Key names: torchvision-style blocks (conv1, maxpool1, conv2, conv3, maxpool2, inception3a ... inception5b,
avgpool, dropout, fc) with torchvision Inception-v3 branch names (branch1x1, branch3x3_1/_2,
branch3x3dbl_1/_2/_3, branch_pool). its weights section below maps the pretrainedmodels/Caffe names
(``inception_3a_double_3x3_1_bn`` -> ``inception3a.branch3x3dbl_2.bn``) and is applied automatically.

The pretrainedmodels weights expect **BGR** images in the **0-255** range minus the mean
(104, 117, 128) (std 1): their weight entry records this (``input_space="BGR"``,
``input_range=(0, 255)``) and the model's ``default_cfg`` carries it when built with them.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ._registry import register_model
from ._weights import StateDict, WeightEntry, register_key_map, register_weights
from .layers import (
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

__all__ = ["BNInception", "InceptionBN", "bn_inception"]


def _pass_through_pool() -> nn.Module:
    """3x3/2 max pool of blocks 3c/4e: Caffe's ceil-mode pool at even sizes, conv-sized at odd sizes."""
    return nn.Sequential(
        nn.ConstantPad2d((0, 1, 0, 1), float("-inf")), nn.MaxPool2d(3, stride=2, ceil_mode=True)
    )


class InceptionBN(nn.Module):
    """An Inception module of the BN paper's Figure 5.

    Branches: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 ("double 3x3", the factorized 5x5) | pool -> 1x1.
    ``stride=2`` (blocks 3c and 4e): no 1x1 branch, the last 3x3 of each branch has stride 2, and the
    pool branch is a 3x3/2 max pool passed through without a projection ("max + pass through").
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        dbl3x3red: int,
        dbl3x3: int,
        pool: str,
        pool_proj: int,
        *,
        stride: int = 1,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        check_choice("pool", pool, ("avg", "max"))
        if stride not in (1, 2):
            raise UsageError(f"stride must be 1 or 2, got {stride!r}")
        if stride == 2 and (ch1x1 or pool_proj or pool != "max"):
            raise UsageError("a stride-2 block has no 1x1 branch and a max-pool pass-through")
        self.out_channels = ch1x1 + ch3x3 + dbl3x3 + (pool_proj if stride == 1 else in_channels)
        self.branch1x1: nn.Module | None = conv_layer(in_channels, ch1x1, kernel_size=1) if ch1x1 else None

        self.branch3x3_1 = conv_layer(in_channels, ch3x3red, kernel_size=1)
        self.branch3x3_2 = conv_layer(ch3x3red, ch3x3, kernel_size=3, stride=stride, padding=1)

        self.branch3x3dbl_1 = conv_layer(in_channels, dbl3x3red, kernel_size=1)
        self.branch3x3dbl_2 = conv_layer(dbl3x3red, dbl3x3, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_layer(dbl3x3, dbl3x3, kernel_size=3, stride=stride, padding=1)

        if stride == 2:
            self.pool: nn.Module = _pass_through_pool()
        elif pool == "avg":
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        else:
            self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.branch_pool: nn.Module | None = (
            conv_layer(in_channels, pool_proj, kernel_size=1) if pool_proj else None
        )

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        if self.branch1x1 is not None:
            outs.append(self.branch1x1(x))
        outs.append(self.branch3x3_2(self.branch3x3_1(x)))
        outs.append(self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))))
        p = self.pool(x)
        outs.append(self.branch_pool(p) if self.branch_pool is not None else p)
        return torch.cat(outs, 1)


class SeparableStem(nn.Sequential):
    """The paper's first layer: a depthwise 7x7/2 conv (depth multiplier 8), a pointwise 1x1 conv,
    BN, ReLU (keys ``conv_dw``, ``conv``, ``bn``)."""

    def __init__(
        self, in_chans: int, out_channels: int, *, multiplier: int = 8, bias: bool, bn_eps: float
    ) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_chans, in_chans * multiplier, 7, stride=2, padding=3, groups=in_chans, bias=False
        )
        self.conv = nn.Conv2d(in_chans * multiplier, out_channels, 1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.act = nn.ReLU(inplace=True)


def _min_side(h: int) -> int:
    """The side after conv1 (7x7/2, pad 3) and the two 3x3/2 ceil-mode pools of the stem."""
    n = spatial_out(h, 7, 2, 3)  # conv1
    return spatial_out(spatial_out(n, 3, 2, ceil_mode=True), 3, 2, ceil_mode=True)  # pool1, pool2


def _final_side(h: int) -> int:
    """The side after the stride-2 blocks 3c and 4e (their 3x3/2 padded convs)."""
    return spatial_out(spatial_out(_min_side(h), 3, 2, 1), 3, 2, 1)


class BNInception(InceptionBase):
    """BN-Inception (Inception v2). The defaults load the Caffe / pretrainedmodels weights.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        stem_separable: first layer as a depthwise-separable 7x7 conv with depth multiplier 8
            (paper: True; Caffe model and its weights: False).
        conv_bias: a bias in every conv before BN (Caffe model: True; paper: False, BN's shift
            makes it redundant).
        bn_eps: BatchNorm eps (Caffe: 1e-5).
        drop_rate: dropout before the classifier (paper: none, "Remove Dropout", section 4.2.1).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        stem_separable: bool = False,
        conv_bias: bool = True,
        bn_eps: float = 1e-5,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        conv = partial(ConvBNAct, bn_eps=bn_eps, bias=conv_bias)
        blk = partial(InceptionBN, conv_layer=conv)

        # N x 3 x 224 x 224
        self.conv1: nn.Module = (
            SeparableStem(in_chans, 64, bias=conv_bias, bn_eps=bn_eps)
            if stem_separable
            else conv(in_chans, 64, kernel_size=7, stride=2, padding=3)
        )
        # N x 64 x 112 x 112
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # N x 64 x 56 x 56
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        # N x 192 x 56 x 56
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # N x 192 x 28 x 28

        #                         in  #1x1 #3x3r #3x3 d#3x3r d#3x3 pool  proj
        self.inception3a = blk(192, 64, 64, 64, 64, 96, "avg", 32)
        # N x 256 x 28 x 28
        self.inception3b = blk(256, 64, 64, 96, 64, 96, "avg", 64)
        # N x 320 x 28 x 28
        self.inception3c = blk(320, 0, 128, 160, 64, 96, "max", 0, stride=2)
        # N x 576 x 14 x 14
        self.inception4a = blk(576, 224, 64, 96, 96, 128, "avg", 128)
        self.inception4b = blk(576, 192, 96, 128, 96, 128, "avg", 128)
        # N x 576 x 14 x 14
        self.inception4c = blk(576, 160, 128, 160, 128, 160, "avg", 128)
        self.inception4d = blk(608, 96, 128, 192, 160, 192, "avg", 128)
        # N x 608 x 14 x 14
        self.inception4e = blk(608, 0, 128, 192, 192, 256, "max", 0, stride=2)
        # N x 1056 x 7 x 7
        self.inception5a = blk(1056, 352, 192, 320, 160, 224, "avg", 128)
        self.inception5b = blk(1024, 352, 192, 320, 192, 224, "max", 128)
        # N x 1024 x 7 x 7
        self.num_features = self.head_hidden_size = self.inception5b.out_channels

        self.avgpool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.dropout = nn.Dropout(p=drop_rate)
        self.fc = make_classifier(self.num_features, num_classes)

        init_weights(self, "kaiming", fan="fan_out")
        self.min_input_size = min_input_size(_min_side)
        self.min_aux_input_size = self.min_input_size
        self.default_cfg = make_cfg(
            in_chans, num_classes, 224, min_input_size=self.min_input_size,
            first_conv="conv1.conv_dw" if stem_separable else "conv1.conv", classifier="fc",
        )  # fmt: skip
        # feature stages: the last module at each stride (3c and 4e are the stride-2 blocks)
        self.init_stages(
            ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "inception3c",
             "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "inception5a",
             "inception5b"],
            [("conv1", 64, 2), ("conv3", 192, 4), ("inception3b", self.inception3b.out_channels, 8),
             ("inception4d", self.inception4d.out_channels, 16), ("inception5b", self.num_features, 32)],
        )  # fmt: skip

    def feature_side(self, h: int) -> int:
        return _final_side(h)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        # N x 3 x 224 x 224
        x = self.maxpool1(self.conv1(x))
        # N x 64 x 56 x 56
        x = self.maxpool2(self.conv3(self.conv2(x)))
        # N x 192 x 28 x 28
        x = self.inception3c(self.inception3b(self.inception3a(x)))
        # N x 576 x 14 x 14
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.inception4e(self.inception4d(x))
        # N x 1056 x 7 x 7
        x = self.inception5b(self.inception5a(x))
        # N x 1024 x 7 x 7
        return x, []

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._pool_flatten(self.avgpool(x))
        # N x 1024
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)

    def _reset_heads(self, num_classes: int) -> None:
        self.fc = make_classifier(self.num_features, num_classes)


@register_model
def bn_inception(**kwargs: Any) -> BNInception:
    """BN-Inception / Inception v2 (11,295,240 params at 1000 classes; the Caffe/pretrainedmodels layout)."""
    return BNInception(**kwargs)


# --------------------------------------------------------------------------------------------------
# Weights

# BGR, 0-255 input minus a per-channel mean in BGR order (Caffe): x = 255 * rgb[::-1] - mean, std 1.
register_weights(WeightEntry(
    model="bn_inception", tag="imagenet_caffe",
    url="http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    filename="bn_inception-52deb4733.pth",
    input_size=(3, 224, 224), mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0),
    interpolation="bilinear", crop_pct=0.875, input_space="BGR", input_range=(0.0, 255.0),
    accuracy={"imagenet1k_top1": 73.524, "imagenet1k_top5": 91.562},
    params=11295240, gmacs=2.033, key_map="pretrainedmodels_bninception",
    source="pretrainedmodels bninception 'imagenet' (Caffe BN-Inception of Yuanjun Xiong, ported to "
    "PyTorch by Cadene); accuracy as measured by pretrainedmodels",
))  # fmt: skip


# pretrainedmodels' ``bninception`` (the Caffe BN-Inception port) -> ``bn_inception``. Its keys are
# flat Caffe layer names: ``conv1_7x7_s2`` (conv) + ``conv1_7x7_s2_bn`` (BN) ->
# ``conv1.conv`` + ``conv1.bn``; ``conv2_3x3_reduce`` -> ``conv2``; ``conv2_3x3`` -> ``conv3``;
# ``inception_<block>_<part>[_bn]`` -> ``inception<block>.<branch>.{conv,bn}`` with the parts below;
# ``last_linear`` -> ``fc``. BN tensors stored as 1 x C (tsn-pytorch's copy of the port) become C.
_BNINCEPTION_STEM = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2", "conv2_3x3": "conv3"}


_BNINCEPTION_PARTS = {
    "1x1": "branch1x1",
    "3x3_reduce": "branch3x3_1",
    "3x3": "branch3x3_2",
    "double_3x3_reduce": "branch3x3dbl_1",
    "double_3x3_1": "branch3x3dbl_2",
    "double_3x3_2": "branch3x3dbl_3",
    "pool_proj": "branch_pool",
}


_BNINCEPTION_BLOCK = re.compile(r"inception_(\d[a-e])_(\w+)")


def _is_pretrainedmodels_bninception(sd: StateDict) -> bool:
    return "conv1_7x7_s2.weight" in sd and "inception_3a_1x1.weight" in sd


def remap_pretrainedmodels_bninception(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, v in sd.items():
        layer, _, param = key.rpartition(".")
        is_bn = layer.endswith("_bn")
        base = layer[: -len("_bn")] if is_bn else layer
        sub = "bn" if is_bn else "conv"
        m = _BNINCEPTION_BLOCK.fullmatch(base)
        if base == "last_linear":
            new = f"fc.{param}"
        elif base in _BNINCEPTION_STEM:
            new = f"{_BNINCEPTION_STEM[base]}.{sub}.{param}"
        elif m is not None and m.group(2) in _BNINCEPTION_PARTS:
            new = f"inception{m.group(1)}.{_BNINCEPTION_PARTS[m.group(2)]}.{sub}.{param}"
        else:
            new = key  # unknown: left as is, so fit_state_dict names it
        if is_bn and v.dim() == 2 and v.shape[0] == 1:
            v = v.reshape(-1)
        out[new] = v
    return out


register_key_map(
    "pretrainedmodels_bninception", "bn_inception", _is_pretrainedmodels_bninception,
    remap_pretrainedmodels_bninception, entry="imagenet_caffe",
)  # fmt: skip
