"""Inception-ResNet v1 and v2 — "Inception-v4, Inception-ResNet and the Impact of Residual Connections
on Learning" (Szegedy, Ioffe, Vanhoucke & Alemi, AAAI 2017), Figures 7, 10-19 and Table 1.

Both networks share one layout and timm's module names (``inception_resnet_v2.py``, itself Cadene's
port of the TF-slim model released with the weights):

stem -> ``repeat`` (Inception-ResNet-A, 35x35) -> ``mixed_6a`` (Reduction-A) -> ``repeat_1``
(Inception-ResNet-B, 17x17) -> ``mixed_7a`` (Reduction-B) -> ``repeat_2`` + ``block8``
(Inception-ResNet-C, 8x8) -> [``conv2d_7b``] -> ``global_pool`` -> ``head_drop`` -> ``classif``.

Every residual block is ``relu(x + scale * conv1x1_linear(concat(branches)))`` (section 3.3: residuals
scaled by 0.1-0.3 before the addition stabilize wide networks; TF-slim uses 0.17 / 0.10 / 0.20 for
the A / B / C blocks, ``residual_scales``). ``block8`` is the last C block; in TF-slim (and so timm and
facenet) it has no ReLU and no scaling (``slim_final_block=True``); the paper's figures put a ReLU
after every block.

* ``inception_resnet_v2``: the released TF-slim network that timm ports (a timm state_dict loads
  with ``strict=True``, same outputs; 55,843,464 parameters at 1000 classes). It differs from the
  paper's Figures 15-19 beyond the flags: a v3-style stem ending in ``mixed_5b`` (320 channels; the
  paper reuses the 384-channel Inception-v4 stem), block widths 320 / 1088 / 2080 (paper: 384 / 1154
  / 2048) and a final 1x1 conv ``conv2d_7b`` to 1536 channels. Block counts are TF-slim's 10 / 20 / 10
  (paper Figure 15: 5 / 10 / 5, ``num_blocks=(5, 10, 5)``). Reduction-A uses Table 1's
  k, l, m, n = 256, 256, 384, 384.
* ``inception_resnet_v1``: the paper's network: its own stem (Figure 14, 3x3/2 conv to 256 channels
  at 35x35), 5 x A (Figure 10), Reduction-A with k, l, m, n = 192, 192, 256, 384 (Figure 7,
  Table 1), 10 x B (Figure 11), Reduction-B (Figure 12), 5 x C (Figure 13), 1792 features, average
  pooling, dropout (keep 0.8). facenet-pytorch's ``InceptionResnetV1`` (David Sandberg's FaceNet,
  TF-slim) is this network with ``num_blocks=(5, 10, 6)``, ``slim_final_block=True`` and a 512-d
  embedding head (``embed_dim=512``: bias-free linear ``last_linear`` + ``last_bn``, then the
  classifier, or an L2 normalization with ``num_classes=0``); its weights section below maps its state_dict
  (the ``vggface2`` entry) and ``num_classes=0`` returns its L2-normalized 512-d embeddings.

Convs are conv + BN (eps 1e-3, TensorFlow's) + ReLU; in-block average pools do not count padding.
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ._registry import register_model
from ._weights import StateDict, WeightEntry, register_key_map, register_weights
from .inception_v4 import ReductionA
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
    "Block17",
    "Block35",
    "Block8",
    "InceptionResNetV1",
    "InceptionResNetV2",
    "L2Norm",
    "Mixed5b",
    "Mixed7a",
    "inception_resnet_v1",
    "inception_resnet_v2",
]


class Mixed5b(nn.Module):
    """Inception-ResNet-v2 stem end (TF-slim ``Mixed_5b``, an Inception-v3 A block):
    1x1 96 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 64."""

    def __init__(self, *, conv_layer: ConvLayer = ConvBNAct) -> None:
        super().__init__()
        self.branch0 = conv_layer(192, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(192, 48, kernel_size=1),
            conv_layer(48, 64, kernel_size=5, padding=2),
        )
        self.branch2 = nn.Sequential(
            conv_layer(192, 64, kernel_size=1),
            conv_layer(64, 96, kernel_size=3, padding=1),
            conv_layer(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            conv_layer(192, 64, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block35(nn.Module):
    """Inception-ResNet-A (35x35): 1x1 32 | 1x1 32 -> 3x3 32 | 1x1 32 -> 3x3 a -> 3x3 b, then a linear
    1x1 conv back to ``channels``, scaled residual, ReLU. v1 (Figure 10): 256 channels, a, b = 32, 32;
    v2 (TF-slim): 320 channels, a, b = 48, 64."""

    def __init__(
        self,
        channels: int,
        dbl: tuple[int, int],
        scale: float,
        *,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_layer(channels, 32, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(channels, 32, kernel_size=1),
            conv_layer(32, 32, kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            conv_layer(channels, 32, kernel_size=1),
            conv_layer(32, dbl[0], kernel_size=3, padding=1),
            conv_layer(dbl[0], dbl[1], kernel_size=3, padding=1),
        )
        self.conv2d = nn.Conv2d(64 + dbl[1], channels, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)
        return self.act(self.conv2d(out) * self.scale + x)


class Block17(nn.Module):
    """Inception-ResNet-B (17x17): 1x1 c0 | 1x1 r -> 1x7 a -> 7x1 b, linear 1x1 conv, scaled residual,
    ReLU. v1 (Figure 11): 896 channels, c0 = r = a = b = 128; v2 (TF-slim): 1088, 192 | 128, 160, 192."""

    def __init__(
        self,
        channels: int,
        ch0: int,
        ch1: tuple[int, int, int],
        scale: float,
        *,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_layer(channels, ch0, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(channels, ch1[0], kernel_size=1),
            conv_layer(ch1[0], ch1[1], kernel_size=(1, 7), padding=(0, 3)),
            conv_layer(ch1[1], ch1[2], kernel_size=(7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(ch0 + ch1[2], channels, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat((self.branch0(x), self.branch1(x)), 1)
        return self.act(self.conv2d(out) * self.scale + x)


class Block8(nn.Module):
    """Inception-ResNet-C (8x8): 1x1 c0 | 1x1 r -> 1x3 a -> 3x1 b, linear 1x1 conv, scaled residual,
    ReLU unless ``no_relu``. v1 (Figure 13): 1792 channels, 192 | 192, 192, 192; v2 (TF-slim): 2080,
    192 | 192, 224, 256."""

    def __init__(
        self,
        channels: int,
        ch0: int,
        ch1: tuple[int, int, int],
        scale: float = 1.0,
        no_relu: bool = False,
        *,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_layer(channels, ch0, kernel_size=1)
        self.branch1 = nn.Sequential(
            conv_layer(channels, ch1[0], kernel_size=1),
            conv_layer(ch1[0], ch1[1], kernel_size=(1, 3), padding=(0, 1)),
            conv_layer(ch1[1], ch1[2], kernel_size=(3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(ch0 + ch1[2], channels, kernel_size=1)
        self.relu: nn.Module | None = None if no_relu else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat((self.branch0(x), self.branch1(x)), 1)
        out = self.conv2d(out) * self.scale + x
        return out if self.relu is None else self.relu(out)


class Mixed7a(nn.Module):
    """Reduction-B (17x17 -> 8x8): 1x1 256 -> 3x3/2 c0 V | 1x1 256 -> 3x3/2 c1 V |
    1x1 256 -> 3x3 c2 -> 3x3/2 c3 V | 3x3/2 max pool V. v1 (Figure 12): 384, 256, 256, 256;
    v2 (TF-slim): 384, 288, 288, 320."""

    def __init__(
        self,
        in_channels: int,
        c0: int,
        c1: int,
        c2: tuple[int, int],
        *,
        conv_layer: ConvLayer = ConvBNAct,
    ) -> None:
        super().__init__()
        self.out_channels = c0 + c1 + c2[1] + in_channels
        self.branch0 = nn.Sequential(
            conv_layer(in_channels, 256, kernel_size=1),
            conv_layer(256, c0, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            conv_layer(in_channels, 256, kernel_size=1),
            conv_layer(256, c1, kernel_size=3, stride=2),
        )
        self.branch2 = nn.Sequential(
            conv_layer(in_channels, 256, kernel_size=1),
            conv_layer(256, c2[0], kernel_size=3, padding=1),
            conv_layer(c2[0], c2[1], kernel_size=3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class L2Norm(nn.Module):
    """L2 normalization over features: facenet's embedding output (``num_classes=0``)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2.0, dim=1)


def _min_side(h: int) -> int:
    """The side after mixed_7a: Reduction-B needs 3x3 at the 17x17 stage (75 px, both stems)."""
    n = spatial_out(spatial_out(h, 3, 2), 3)  # conv2d_1a, conv2d_2a (conv2d_2b is padded)
    n = spatial_out(spatial_out(n, 3, 2), 3)  # maxpool_3a, conv2d_4a (conv2d_3b is 1x1)
    n = spatial_out(n, 3, 2)  # maxpool_5a (v2) / conv2d_4b (v1)
    return spatial_out(spatial_out(n, 3, 2), 3, 2)  # mixed_6a, mixed_7a


def _check_blocks(num_blocks: tuple[int, int, int], residual_scales: tuple[float, float, float]) -> None:
    counts = [n for n in num_blocks if isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1]
    if len(num_blocks) != 3 or len(counts) != 3:
        raise UsageError(f"num_blocks must be three positive counts (A, B, C blocks), got {num_blocks!r}")
    if len(residual_scales) != 3:
        raise UsageError(f"residual_scales must be three factors (A, B, C blocks), got {residual_scales!r}")


class InceptionResNetV2(InceptionBase):
    """Inception-ResNet-v2 as released (TF-slim, timm's module names).

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        num_blocks: A, B, C blocks counting ``block8`` (TF-slim/timm: (10, 20, 10); paper: (5, 10, 5)).
        residual_scales: residual scaling of the A, B, C blocks (TF-slim: (0.17, 0.10, 0.20); the paper:
            "between 0.1 and 0.3"; (1, 1, 1) for none).
        slim_final_block: ``block8`` without ReLU and scaling (TF-slim/timm: True; paper: False).
        drop_rate: dropout before the classifier (paper: keep 0.8, so 0.2; timm's default 0.0).
        bn_eps: BatchNorm eps (TensorFlow: 1e-3).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``).
    """

    _pool_attr = "global_pool"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        num_blocks: tuple[int, int, int] = (10, 20, 10),
        residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20),
        slim_final_block: bool = True,
        drop_rate: float = 0.2,
        bn_eps: float = 1e-3,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_blocks(num_blocks, residual_scales)
        self.num_classes = num_classes
        self.in_chans = in_chans
        conv = partial(ConvBNAct, bn_eps=bn_eps)
        sa, sb, sc = residual_scales

        # N x 3 x 299 x 299
        self.conv2d_1a = conv(in_chans, 32, kernel_size=3, stride=2)
        # N x 32 x 149 x 149
        self.conv2d_2a = conv(32, 32, kernel_size=3)
        # N x 32 x 147 x 147
        self.conv2d_2b = conv(32, 64, kernel_size=3, padding=1)
        # N x 64 x 147 x 147
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        # N x 64 x 73 x 73
        self.conv2d_3b = conv(64, 80, kernel_size=1)
        # N x 80 x 73 x 73
        self.conv2d_4a = conv(80, 192, kernel_size=3)
        # N x 192 x 71 x 71
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        # N x 192 x 35 x 35
        self.mixed_5b = Mixed5b(conv_layer=conv)
        # N x 320 x 35 x 35
        self.repeat = nn.Sequential(
            *[Block35(320, (48, 64), sa, conv_layer=conv) for _ in range(num_blocks[0])]
        )
        # N x 320 x 35 x 35
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384, conv_layer=conv)
        # N x 1088 x 17 x 17
        self.repeat_1 = nn.Sequential(
            *[Block17(1088, 192, (128, 160, 192), sb, conv_layer=conv) for _ in range(num_blocks[1])]
        )
        # N x 1088 x 17 x 17
        self.mixed_7a = Mixed7a(1088, 384, 288, (288, 320), conv_layer=conv)
        # N x 2080 x 8 x 8
        self.repeat_2 = nn.Sequential(
            *[Block8(2080, 192, (192, 224, 256), sc, conv_layer=conv) for _ in range(num_blocks[2] - 1)]
        )
        self.block8 = Block8(
            2080, 192, (192, 224, 256), 1.0 if slim_final_block else sc, no_relu=slim_final_block,
            conv_layer=conv,
        )  # fmt: skip
        # N x 2080 x 8 x 8
        self.conv2d_7b = conv(2080, 1536, kernel_size=1)
        # N x 1536 x 8 x 8
        self.num_features = self.head_hidden_size = 1536
        self.global_pool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.head_drop = nn.Dropout(p=drop_rate)
        self.classif = make_classifier(self.num_features, num_classes)

        init_weights(self, "kaiming")
        self.min_input_size = min_input_size(_min_side)
        self.min_aux_input_size = self.min_input_size
        self.default_cfg = make_cfg(
            in_chans, num_classes, 299, mean=INCEPTION_MEAN, std=INCEPTION_STD,
            interpolation="bicubic", crop_pct=0.8975, min_input_size=self.min_input_size,
            first_conv="conv2d_1a.conv", classifier="classif",
        )  # fmt: skip
        # feature stages as timm's inception_resnet_v2: the stem's convs at strides 2 and 4, the A and B
        # block stacks, the final 1x1 conv
        self.init_stages(
            ["conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a",
             "mixed_5b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b"],
            [("conv2d_2b", 64, 2), ("conv2d_4a", 192, 4), ("repeat", 320, 8), ("repeat_1", 1088, 16),
             ("conv2d_7b", 1536, 32)],
        )  # fmt: skip

    def feature_side(self, h: int) -> int:
        return _min_side(h)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        # N x 3 x 299 x 299
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        # N x 64 x 147 x 147
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        # N x 192 x 71 x 71
        x = self.mixed_5b(self.maxpool_5a(x))
        # N x 320 x 35 x 35
        x = self.mixed_6a(self.repeat(x))
        # N x 1088 x 17 x 17
        x = self.mixed_7a(self.repeat_1(x))
        # N x 2080 x 8 x 8
        x = self.conv2d_7b(self.block8(self.repeat_2(x)))
        # N x 1536 x 8 x 8
        return x, []

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._pool_flatten(self.global_pool(x))
        # N x 1536
        x = self.head_drop(x)
        return x if pre_logits else self.classif(x)

    def _reset_heads(self, num_classes: int) -> None:
        self.classif = make_classifier(self.num_features, num_classes)


class InceptionResNetV1(InceptionBase):
    """Inception-ResNet-v1 as in the paper (Figures 7, 10-14), with timm-style module names.

    Args:
        num_classes: classifier outputs (0: pooled features, or with ``embed_dim`` the L2-normalized
            embedding).
        in_chans: input channels.
        num_blocks: A, B, C blocks counting ``block8`` (paper: (5, 10, 5); facenet: (5, 10, 6)).
        residual_scales: residual scaling of the A, B, C blocks (TF-slim/facenet: (0.17, 0.10, 0.20);
            the paper: "between 0.1 and 0.3"; (1, 1, 1) for none).
        slim_final_block: ``block8`` without ReLU and scaling (paper: False; TF-slim/facenet: True).
        embed_dim: an embedding head after pooling and dropout: bias-free linear ``last_linear`` to
            ``embed_dim`` + BatchNorm1d ``last_bn`` (paper: 0, none; facenet: 512).
        embed_normalize: with ``embed_dim`` and ``num_classes=0``, L2-normalize the embedding (facenet).
        drop_rate: dropout before the head (paper: keep 0.8, so 0.2; facenet: 0.6).
        bn_eps: BatchNorm eps (TensorFlow: 1e-3).
        global_pool: "avg" (paper), "max", "avgmax" or "" (none; needs ``num_classes=0``, and drops
            the embedding head, which takes pooled features).
    """

    _pool_attr = "global_pool"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        num_blocks: tuple[int, int, int] = (5, 10, 5),
        residual_scales: tuple[float, float, float] = (0.17, 0.10, 0.20),
        slim_final_block: bool = False,
        embed_dim: int = 0,
        embed_normalize: bool = True,
        drop_rate: float = 0.2,
        bn_eps: float = 1e-3,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_blocks(num_blocks, residual_scales)
        if embed_dim < 0:
            raise UsageError(f"embed_dim must be >= 0, got {embed_dim!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.embed_normalize = embed_normalize
        conv = partial(ConvBNAct, bn_eps=bn_eps)
        sa, sb, sc = residual_scales

        # stem (Figure 14). N x 3 x 299 x 299
        self.conv2d_1a = conv(in_chans, 32, kernel_size=3, stride=2)
        # N x 32 x 149 x 149
        self.conv2d_2a = conv(32, 32, kernel_size=3)
        # N x 32 x 147 x 147
        self.conv2d_2b = conv(32, 64, kernel_size=3, padding=1)
        # N x 64 x 147 x 147
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        # N x 64 x 73 x 73
        self.conv2d_3b = conv(64, 80, kernel_size=1)
        # N x 80 x 73 x 73
        self.conv2d_4a = conv(80, 192, kernel_size=3)
        # N x 192 x 71 x 71
        self.conv2d_4b = conv(192, 256, kernel_size=3, stride=2)
        # N x 256 x 35 x 35
        self.repeat = nn.Sequential(
            *[Block35(256, (32, 32), sa, conv_layer=conv) for _ in range(num_blocks[0])]
        )
        # N x 256 x 35 x 35
        self.mixed_6a = ReductionA(256, k=192, l=192, m=256, n=384, conv_layer=conv)
        # N x 896 x 17 x 17
        self.repeat_1 = nn.Sequential(
            *[Block17(896, 128, (128, 128, 128), sb, conv_layer=conv) for _ in range(num_blocks[1])]
        )
        # N x 896 x 17 x 17
        self.mixed_7a = Mixed7a(896, 384, 256, (256, 256), conv_layer=conv)
        # N x 1792 x 8 x 8
        self.repeat_2 = nn.Sequential(
            *[Block8(1792, 192, (192, 192, 192), sc, conv_layer=conv) for _ in range(num_blocks[2] - 1)]
        )
        self.block8 = Block8(
            1792, 192, (192, 192, 192), 1.0 if slim_final_block else sc, no_relu=slim_final_block,
            conv_layer=conv,
        )  # fmt: skip
        # N x 1792 x 8 x 8
        self.num_features = 1792
        self.global_pool = make_global_pool(global_pool, num_classes)
        self.global_pool_type = global_pool
        self.head_drop = nn.Dropout(p=drop_rate)
        if embed_dim and global_pool:
            self.last_linear: nn.Module | None = nn.Linear(self.num_features, embed_dim, bias=False)
            self.last_bn: nn.Module | None = nn.BatchNorm1d(embed_dim, eps=bn_eps)
        else:
            self.last_linear = None
            self.last_bn = None
        self.head_hidden_size = self.num_features if self.last_linear is None else embed_dim
        self.classif = self._make_classifier(num_classes)

        init_weights(self, "kaiming")
        self.min_input_size = min_input_size(_min_side)
        self.min_aux_input_size = self.min_input_size
        self.default_cfg = make_cfg(
            in_chans, num_classes, 299, mean=INCEPTION_MEAN, std=INCEPTION_STD,
            interpolation="bicubic", crop_pct=0.875, min_input_size=self.min_input_size,
            first_conv="conv2d_1a.conv", classifier="classif",
        )  # fmt: skip
        # feature stages: the stem's convs at strides 2 and 4, the A and B block stacks, the last C block
        self.init_stages(
            ["conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
             "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8"],
            [("conv2d_2b", 64, 2), ("conv2d_4a", 192, 4), ("repeat", 256, 8), ("repeat_1", 896, 16),
             ("block8", 1792, 32)],
        )  # fmt: skip

    def feature_side(self, h: int) -> int:
        return _min_side(h)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes == 0 and self.last_linear is not None and self.embed_normalize:
            return L2Norm()
        return make_classifier(self.head_hidden_size, num_classes)

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        # N x 3 x 299 x 299
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        # N x 64 x 147 x 147
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        # N x 192 x 71 x 71
        x = self.conv2d_4b(x)
        # N x 256 x 35 x 35
        x = self.mixed_6a(self.repeat(x))
        # N x 896 x 17 x 17
        x = self.mixed_7a(self.repeat_1(x))
        # N x 1792 x 8 x 8
        x = self.block8(self.repeat_2(x))
        # N x 1792 x 8 x 8
        return x, []

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooling, dropout, the embedding (if any; ``pre_logits`` returns it before normalization),
        then the classifier."""
        x = self._pool_flatten(self.global_pool(x))
        # N x 1792
        x = self.head_drop(x)
        if self.last_linear is not None and self.last_bn is not None:
            x = self.last_bn(self.last_linear(x))
            # N x embed_dim
        return x if pre_logits else self.classif(x)

    def _reset_heads(self, num_classes: int) -> None:
        """The classifier (0: features / the normalized embedding); without global pooling the
        embedding head goes too (it takes pooled features)."""
        if self.global_pool_type == "":
            self.last_linear = self.last_bn = None
            self.head_hidden_size = self.num_features
        self.classif = self._make_classifier(num_classes)


@register_model
def inception_resnet_v1(**kwargs: Any) -> InceptionResNetV1:
    """Inception-ResNet-v1 as in the paper (5/10/5 blocks); facenet-pytorch's weights load (key map below)."""
    return InceptionResNetV1(**kwargs)


@register_model
def inception_resnet_v2(**kwargs: Any) -> InceptionResNetV2:
    """timm-compatible Inception-ResNet-v2 (55,843,464 params at 1000 classes)."""
    return InceptionResNetV2(**kwargs)


# --------------------------------------------------------------------------------------------------
# Weights

register_weights(WeightEntry(
    model="inception_resnet_v2", tag="tf_in1k",
    url="https://huggingface.co/timm/inception_resnet_v2.tf_in1k/resolve/main/model.safetensors",
    filename="timm-inception_resnet_v2.tf_in1k.safetensors",
    input_size=(3, 299, 299), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    interpolation="bicubic", crop_pct=0.8975,
    accuracy={"imagenet1k_top1": 80.170, "imagenet1k_top5": 95.234},
    params=55843464, gmacs=13.156,
    source="timm hub id timm/inception_resnet_v2.tf_in1k (TF-slim weights); accuracy of this port as "
    "measured by pretrainedmodels (TF-slim reports 80.4 / 95.3)",
))  # fmt: skip


# facenet-pytorch: faces cropped by MTCNN to 160x160, fixed_image_standardization (x - 127.5) / 128.
_FACENET_KWARGS = {"embed_dim": 512, "num_blocks": (5, 10, 6), "slim_final_block": True, "drop_rate": 0.6}


register_weights(WeightEntry(
    model="inception_resnet_v1", tag="vggface2",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    filename="20180402-114759-vggface2.pt", num_classes=8631,
    input_size=(3, 160, 160), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3,
    interpolation="bilinear", crop_pct=1.0,
    accuracy={"lfw_accuracy": 99.65}, params=27910327, gmacs=1.418,
    model_kwargs=_FACENET_KWARGS, key_map="facenet_inception_resnet_v1",
    source="facenet-pytorch InceptionResnetV1(pretrained='vggface2') (David Sandberg's FaceNet "
    "20180402-114759); use num_classes=0 for its L2-normalized 512-d face embeddings",
))  # fmt: skip


register_weights(WeightEntry(
    model="inception_resnet_v1", tag="casia_webface",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
    filename="20180408-102900-casia-webface.pt", num_classes=10575,
    input_size=(3, 160, 160), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3,
    interpolation="bilinear", crop_pct=1.0,
    accuracy={"lfw_accuracy": 99.05}, params=28907599, gmacs=1.418,
    model_kwargs=_FACENET_KWARGS, key_map="facenet_inception_resnet_v1",
    source="facenet-pytorch InceptionResnetV1(pretrained='casia-webface') (David Sandberg's FaceNet "
    "20180408-102900); use num_classes=0 for its L2-normalized 512-d face embeddings",
))  # fmt: skip


# facenet-pytorch's ``InceptionResnetV1`` (FaceNet, David Sandberg's TF-slim model) ->
# ``inception_resnet_v1`` built with the flags of the ``vggface2`` entry (embed_dim=512,
# num_blocks=(5, 10, 6), slim_final_block=True). The stem, mixed_6a/7a, block8, last_linear and last_bn
# keep their names; the three block stacks are renumbered as in timm's Inception-ResNet-v2
# (repeat_1/2/3 -> repeat/repeat_1/repeat_2) and the classifier ``logits`` becomes ``classif``.
# With num_classes=0 the model returns facenet's L2-normalized 512-d embeddings.
_FACENET_PREFIXES = {
    "repeat_1.": "repeat.",
    "repeat_2.": "repeat_1.",
    "repeat_3.": "repeat_2.",
    "logits.": "classif.",
}


def _is_facenet_inception_resnet_v1(sd: StateDict) -> bool:
    return "repeat_3.0.conv2d.weight" in sd and "last_bn.running_var" in sd


def remap_facenet_inception_resnet_v1(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, v in sd.items():
        for old, new in _FACENET_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = v
    return out


register_key_map(
    "facenet_inception_resnet_v1", "inception_resnet_v1", _is_facenet_inception_resnet_v1,
    remap_facenet_inception_resnet_v1, entry="vggface2",
)  # fmt: skip
