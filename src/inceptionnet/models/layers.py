"""Shared building blocks of the Inception family.

`ConvBNAct` is torchvision's ``BasicConv2d`` (submodules ``conv`` and ``bn``, so torchvision and timm
state_dicts load), generalized with ``norm`` / ``act`` flags; with ``norm="none"`` it is the paper's
conv + bias + ReLU (``ConvAct``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..data import channel_stats
from ..errors import InputShapeError

NORMS = ("bn", "none")
# The activations of the ablation flag ``act``: name -> module factory; ACTS is derived from it so a
# new activation is one line here (the ablation study and the tests iterate over ACTS).
_ACT_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "tanh": nn.Tanh,
    "silu": lambda: nn.SiLU(inplace=True),
}
ACTS = tuple(_ACT_FACTORIES)
# Elementwise activation modules the graph tools treat as "just an activation" (the 1x1 merge in
# deploy/fold.py, the per-layer table): the types ``make_act`` builds plus the usual others.
ACT_MODULES: tuple[type[nn.Module], ...] = tuple(
    dict.fromkeys([*(type(f()) for f in _ACT_FACTORIES.values()), nn.ReLU6, nn.GELU, nn.Sigmoid])
)
POOLS = ("max", "avg")


class ModelOutput(NamedTuple):
    """What ``model(x, return_aux=True)`` returns: the main logits and the aux logits (maybe empty)."""

    logits: Tensor
    aux: tuple[Tensor, ...]


def make_act(act: str) -> nn.Module:
    if act not in _ACT_FACTORIES:
        raise ValueError(f"unknown act {act!r}; choose one of {', '.join(ACTS)}")
    return _ACT_FACTORIES[act]()


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


class ConvBNAct(nn.Sequential):
    """conv -> BatchNorm -> activation (torchvision's BasicConv2d; keys ``conv.*`` and ``bn.*``).

    Without BN (``norm="none"``) the conv has a bias, as in the paper's Caffe model; ``bias=True``
    keeps it with BN too (the Caffe BN-Inception port has both).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        *,
        norm: str = "bn",
        act: str = "relu",
        bn_eps: float = 1e-3,
        bias: bool | None = None,
    ) -> None:
        check_choice("norm", norm, NORMS)
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            bias=norm == "none" if bias is None else bias,
        )  # fmt: skip
        if norm == "bn":
            self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.act = make_act(act)


ConvLayer = Callable[..., nn.Module]


def check_input(x: Tensor, in_chans: int, min_size: int, name: str) -> None:
    """Raise a clear error before any compute for inputs the network cannot take."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if x.dim() != 4:
        raise InputShapeError(
            f"{name} expects a 4-D batch N x C x H x W, got a {x.dim()}-D tensor of shape "
            f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)"
        )
    if x.shape[1] != in_chans:
        raise InputShapeError(
            f"{name} expected {in_chans} input channels, got {x.shape[1]}; "
            f"convert the images or create the model with in_chans={x.shape[1]}"
        )
    h, w = int(x.shape[2]), int(x.shape[3])
    if h < min_size or w < min_size:
        raise InputShapeError(f"input {h}x{w} is too small for {name}: the minimum is {min_size}x{min_size}")


def imagenet_to_inception_input(x: Tensor) -> Tensor:
    """torchvision's ``transform_input``: re-normalize an ImageNet-mean/std input to mean/std 0.5,
    what the weights ported from TensorFlow expect."""
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)


def init_weights(
    module: nn.Module,
    scheme: str,
    *,
    std: float = 0.01,
    bound: float | None = None,
    fan: str = "fan_in",
    linear: bool = True,
    stds: Mapping[nn.Module, float] | None = None,
) -> None:
    """The family's weight init, in ``module.modules()`` order (so the RNG draws are the same).

    ``"trunc_normal"`` (torchvision's GoogLeNet / Inception v3): convs and linears truncated normal
    with ``std`` (per-module ``stds`` overrides) cut at ``+-bound`` (default ``2 * std``), biases
    zero, BatchNorm at (1, 0). ``"kaiming"`` (timm's v4 / Inception-ResNet, BN-Inception with
    ``fan="fan_out"``): convs He-normal for ReLU, biases zero; linears (``linear=True``) normal
    with ``std`` and a zero bias.
    """
    check_choice("init scheme", scheme, ("trunc_normal", "kaiming"))
    stds = stds or {}
    for m in module.modules():
        if scheme == "trunc_normal" and isinstance(m, nn.Conv2d | nn.Linear):
            sd = stds.get(m, std)
            b = 2 * sd if bound is None else bound
            nn.init.trunc_normal_(m.weight, mean=0.0, std=sd, a=-b, b=b)
        elif scheme == "trunc_normal" and isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=fan, nonlinearity="relu")  # type: ignore[arg-type]
        elif isinstance(m, nn.Linear) and linear:
            nn.init.normal_(m.weight, std=stds.get(m, std))
        else:
            continue
        if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def spatial_out(n: int, k: int, s: int = 1, p: int = 0, ceil_mode: bool = False) -> int:
    """Output side of a conv or pool (kernel ``k``, stride ``s``, padding ``p``) on an ``n``-pixel
    side, as PyTorch computes it; 0 when it does not fit."""
    out = (n + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside the input
        out -= 1
    return max(out, 0)


def min_input_size(side: Callable[[int], int], need: int = 1, limit: int = 4096) -> int:
    """The smallest square input whose side at the network's narrowest point, ``side(h)`` (written
    with ``spatial_out`` along the reducing layers), is at least ``need`` pixels."""
    for h in range(1, limit):
        if side(h) >= need:
            return h
    raise ValueError(f"no input up to {limit} px fits this configuration")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


def make_cfg(
    in_chans: int,
    num_classes: int,
    input_size: int,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
    crop_pct: float = 0.875,
    first_conv: str = "conv1.conv",
    classifier: str = "fc",
    min_input_size: int = 1,
    **extra: object,
) -> dict[str, Any]:
    """The model's input config (timm's ``pretrained_cfg`` keys); eval/predict transforms read it."""
    return dict(
        num_classes=num_classes,
        input_size=(in_chans, input_size, input_size),
        min_input_size=(in_chans, min_input_size, min_input_size),
        mean=channel_stats(mean, in_chans),  # e.g. a 1-channel model: the RGB statistics averaged
        std=channel_stats(std, in_chans),
        interpolation=interpolation,
        crop_pct=crop_pct,
        first_conv=first_conv,
        classifier=classifier,
        **extra,
    )


class InceptionBase(nn.Module):
    """What every model of the family shares: the timm-style API and a Tensor-returning ``forward``.

    Subclasses implement ``_features(x, with_aux) -> (features, aux_logits)``, ``forward_head`` and
    ``reset_classifier``; they set ``num_classes``, ``in_chans``, ``num_features``, ``default_cfg``.
    """

    num_classes: int
    in_chans: int
    num_features: int
    min_input_size: int = 1
    min_aux_input_size: int = 1
    default_cfg: dict[str, Any]

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return self.default_cfg

    @property
    def has_aux(self) -> bool:
        return False

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """N x C x H x W features before global pooling."""
        check_input(x, self.in_chans, self.min_input_size, type(self).__name__)
        return self._features(x, False)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | ModelOutput:
        """Logits (always a Tensor); with ``return_aux=True`` a ``ModelOutput(logits, aux)``."""
        min_size = self.min_aux_input_size if return_aux and self.has_aux else self.min_input_size
        check_input(x, self.in_chans, max(min_size, self.min_input_size), type(self).__name__)
        feats, aux = self._features(x, return_aux)
        logits = self.forward_head(feats)
        if return_aux:
            return ModelOutput(logits, tuple(aux))
        return logits


def make_classifier(num_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or Identity for ``num_classes=0`` (features/embeddings, timm convention)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
