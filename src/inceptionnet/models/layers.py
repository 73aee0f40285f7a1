"""Shared building blocks of the Inception family.

`ConvBNAct` is torchvision's ``BasicConv2d`` (submodules ``conv`` and ``bn``, so torchvision and timm
state_dicts load), generalized with ``norm`` / ``act`` flags; with ``norm="none"`` it is the paper's
conv + bias + ReLU (``ConvAct``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import channel_stats
from ..errors import InputShapeError, UsageError, excerpt, first_line
from ._features import feature_take_indices, fx_symbolic_tracing, resolved_annotations, run_module
from ._registry import check_arg

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
        raise UsageError(f"unknown act {act!r}; choose one of {', '.join(ACTS)}")
    return _ACT_FACTORIES[act]()


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


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


_LOW_PRECISION = (torch.float16, torch.bfloat16, torch.float32)


def check_input(
    x: Tensor,
    in_chans: int,
    min_size: int,
    name: str,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> None:
    """Raise a clear error before any compute for inputs the network cannot take.

    Every problem is an ``InputShapeError`` (a ``ValueError``), non-tensors and wrong dtypes
    included: the model takes a floating-point tensor N x C x H x W in the dtype of its weights
    (``dtype``; float32 unless the model was converted, e.g. ``model.double()``) on their device
    (``device``). Under ``torch.autocast`` float16 / bfloat16 / float32 inputs are all accepted (autocast
    casts them). Scripting, tracing and compiling skip the checks."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    want = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    if not isinstance(x, Tensor):
        module = type(x).__module__.split(".")[0]
        kind = type(x).__name__ if module == "builtins" else f"{module}.{type(x).__name__}"
        how = "torch.from_numpy(x).float()" if module == "numpy" else "torch.as_tensor(x).float()"
        raise InputShapeError(
            f"{name} expects a {want} tensor N x C x H x W, got {kind}; convert it with {how} "
            "(for one image, add the batch dimension with .unsqueeze(0))"
        )
    if not x.is_floating_point():
        conv = "x.float()" if want == "float32" else f"x.to(torch.{want})"
        hint = " / 255 (then normalize with the model's mean and std)" if x.dtype == torch.uint8 else ""
        raise InputShapeError(
            f"{name} expects a {want} tensor N x C x H x W, got a tensor of dtype "
            f"{str(x.dtype).removeprefix('torch.')}; convert it with {conv}{hint}"
        )
    if dtype is not None and x.dtype != dtype:
        autocast = x.dtype in _LOW_PRECISION and dtype in _LOW_PRECISION and _autocast_on(x)
        if not autocast:
            got = str(x.dtype).removeprefix("torch.")
            raise InputShapeError(
                f"{name} has {want} weights but got a {got} input; convert it with x.to(torch.{want}) "
                f"(or the model with model.to(torch.{got}))"
            )
    if device is not None and x.device != device and "meta" not in (x.device.type, device.type):
        raise InputShapeError(
            f"{name} is on {device} but the input is on {x.device}; move it with x.to('{device}')"
        )
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


def _autocast_on(x: Tensor) -> bool:
    try:
        return bool(torch.is_autocast_enabled(x.device.type))
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return False


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
    raise UsageError(f"no input up to {limit} px fits this configuration")


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


class InputTransform(nn.Module):
    """``imagenet_to_inception_input`` as a module: the first step of a feature extractor of a model
    built with ``transform_input=True``."""

    def forward(self, x: Tensor) -> Tensor:
        return imagenet_to_inception_input(x)


class AdaptiveAvgMaxPool2d(nn.Module):
    """Global pooling ``"avgmax"`` (timm's): the mean of the global average and the global max."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1))


GLOBAL_POOLS = ("avg", "max", "avgmax", "")


def make_global_pool(pool_type: str, num_classes: int) -> nn.Module:
    """The global pooling before the classifier: ``"avg"`` (every model's default), ``"max"``,
    ``"avgmax"`` or ``""`` (none: ``forward`` returns the N x C x H x W map, so ``num_classes`` must
    be 0). Avg and max pools are torch's ``AdaptiveAvg/MaxPool2d((1, 1))``."""
    if pool_type not in GLOBAL_POOLS:
        raise UsageError(
            f"unknown global_pool {pool_type!r}; choose one of {', '.join(repr(p) for p in GLOBAL_POOLS)}"
        )
    if pool_type == "" and num_classes:
        raise UsageError(
            f"global_pool='' (no pooling) needs num_classes=0, got {num_classes}: a classifier takes "
            "pooled features"
        )
    if pool_type == "avg":
        return nn.AdaptiveAvgPool2d((1, 1))
    if pool_type == "max":
        return nn.AdaptiveMaxPool2d((1, 1))
    return AdaptiveAvgMaxPool2d() if pool_type == "avgmax" else nn.Identity()


class InceptionBase(nn.Module):
    """What every model of the family shares: the timm model API and a Tensor-returning ``forward``.

    A family implements the written-out ``_features(x, with_aux) -> (features, aux_logits)`` (the
    paper's blocks, shape comments), ``forward_head``, ``_reset_heads`` and ``feature_side``, and
    declares its trunk with ``init_stages``; it sets ``num_classes``, ``in_chans``,
    ``num_features``, ``head_hidden_size``, ``default_cfg``. From the declaration come, for every
    model: ``feature_info``, ``forward_intermediates``, ``prune_intermediate_layers``,
    ``create_model(..., features_only=True)`` (``_features.py``) and gradient checkpointing.

    ``torch.jit.script(model)`` compiles ``forward`` as the logits path; ``torch.fx`` traces it
    (torchvision's ``create_feature_extractor`` works); eager calls check the input first and take
    ``return_aux=True``.
    """

    # TorchScript reads class annotations as types and cannot resolve postponed (string) ones, so
    # the attributes are typed for mypy only; TorchScript infers them from their values.
    if TYPE_CHECKING:
        num_classes: int
        in_chans: int
        num_features: int
        head_hidden_size: int
        min_input_size: int
        min_aux_input_size: int
        default_cfg: dict[str, Any]
        transform_input: bool
        grad_checkpointing: bool
        global_pool_type: str
        layer_names: list[str]
        feature_info: list[dict[str, Any]]
        feature_ends: list[int]
        aux_taps: dict[str, str]

    __jit_unused_properties__ = ["pretrained_cfg"]
    _pool_attr = "avgpool"  # the name of the global pooling module ("global_pool" in timm's layouts)

    def __init__(self) -> None:
        super().__init__()
        self.min_input_size = 1
        self.min_aux_input_size = 1
        self.transform_input = False
        self.grad_checkpointing = False
        self.global_pool_type = "avg"
        self.layer_names = []
        self.feature_info = []
        self.feature_ends = []
        self.aux_taps = {}

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return self.default_cfg

    @property
    def has_aux(self) -> bool:
        return False

    # ---------------------------------------------------------------------------------------------
    # What a family declares

    def init_stages(
        self,
        layer_names: Sequence[str],
        stages: Sequence[tuple[str, int, int]],
        aux_taps: Mapping[str, str] | None = None,
    ) -> None:
        """Declare the trunk: ``layer_names``, the modules ``_features`` runs, in its order;
        ``stages``, (module, channels, reduction) of each feature stage end (timm's
        ``feature_info``); ``aux_taps``, trunk module -> the aux head that reads its output. A test
        runs the declared trunk against ``_features`` for every model. Call it after ``default_cfg``
        is set: it adds ``pool_size`` and ``fixed_input_size`` to it."""
        self.layer_names = list(layer_names)
        self.feature_info = [dict(num_chs=c, reduction=r, module=m) for m, c, r in stages]
        self.feature_ends = [self.layer_names.index(m) for m, _, _ in stages]
        self.aux_taps = dict(aux_taps or {})
        self.sync_pool_size()

    def feature_side(self, h: int) -> int:
        """Side of the ``forward_features`` map for an ``h`` x ``h`` input."""
        raise NotImplementedError

    def sync_pool_size(self) -> None:
        """``default_cfg["pool_size"]``: the final feature map's size at the cfg's input size."""
        side = self.feature_side(int(self.default_cfg["input_size"][-1]))
        self.default_cfg = {**self.default_cfg, "pool_size": (side, side), "fixed_input_size": False}

    def _features(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def _reset_heads(self, num_classes: int) -> None:
        """New classifier(s) for ``num_classes`` (the main one and any aux heads)."""
        raise NotImplementedError

    def _transform_input(self, x: Tensor) -> Tensor:
        return imagenet_to_inception_input(x) if self.transform_input else x

    # ---------------------------------------------------------------------------------------------
    # Input checks (eager only)

    @torch.jit.unused
    def _check_input(self, x: Tensor, min_size: int) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or fx_symbolic_tracing():
            return
        p = next(self.parameters(), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else None
        check_input(x, self.in_chans, min_size, type(self).__name__, dtype, None if p is None else p.device)

    def input_checker(self) -> Callable[..., None]:
        """``check(x, dtype=, device=)`` with this model's channels, minimum size and name (for the
        feature extractors, which hold the trunk but not the model)."""
        return partial(
            check_input, in_chans=self.in_chans, min_size=self.min_input_size, name=type(self).__name__
        )

    def input_transform(self) -> nn.Module | None:
        return InputTransform() if self.transform_input else None

    # ---------------------------------------------------------------------------------------------
    # Forward

    @resolved_annotations  # the root forward that FX traces (see resolved_annotations)
    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor:
        """Logits (always a Tensor); with ``return_aux=True`` (eager) a ``ModelOutput(logits, aux)``.

        Scripted and FX-traced, this is the logits path (``return_aux`` is ignored there)."""
        # nested: TorchScript drops a block under ``if not torch.jit.is_scripting()`` unseen, but
        # compiles the other operand of an ``and`` (here a function it cannot compile)
        if not torch.jit.is_scripting():  # noqa: SIM102
            if not fx_symbolic_tracing():
                return self._forward_eager(x, return_aux)
        feats, _ = self._features(x, False)
        return self.forward_head(feats)

    @torch.jit.unused
    def _forward_eager(self, x: Tensor, return_aux: bool) -> Any:
        check_arg(type(self).__name__, "return_aux", return_aux, bool)
        with_aux = return_aux
        min_size = self.min_input_size
        if with_aux and self.has_aux:
            min_size = max(self.min_aux_input_size, min_size)
        self._check_input(x, min_size)
        if self.grad_checkpointing and torch.is_grad_enabled():
            feats, _, aux = self._run_trunk(x, with_aux=with_aux)
        else:
            feats, aux = self._features(x, with_aux)
        logits = self.forward_head(feats)
        if with_aux:
            return ModelOutput(logits, tuple(aux))
        return logits

    def forward_features(self, x: Tensor) -> Tensor:
        """N x C x H x W features before global pooling."""
        if not torch.jit.is_scripting():  # noqa: SIM102 (nested as in forward)
            if not fx_symbolic_tracing():
                self._check_input(x, self.min_input_size)
                if self.grad_checkpointing and torch.is_grad_enabled():
                    return self._run_trunk(x)[0]
        return self._features(x, False)[0]

    def _run_trunk(
        self, x: Tensor, with_aux: bool = False, last: int | None = None, take: Sequence[int] = ()
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The declared trunk, module by module (checkpointed when enabled): the output of module
        ``last`` (default: the last), the outputs of the modules at ``take``, the aux logits."""
        x = self._transform_input(x)
        feats: list[Tensor] = []
        aux: list[Tensor] = []
        names = self.layer_names if last is None else self.layer_names[: last + 1]
        for i, name in enumerate(names):
            x = run_module(self.get_submodule(name), x, self.grad_checkpointing)
            if i in take:
                feats.append(x)
            head = getattr(self, self.aux_taps[name]) if with_aux and name in self.aux_taps else None
            if head is not None:
                aux.append(head(x))
        return x, feats, aux

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates``: the feature maps at the stages ``indices`` (``None``:
        all, an int: the last n, a list: those, negative from the end; ``feature_info`` lists them)
        and the final features (``forward_features``' output; with ``stop_early``, the last stage
        asked for). ``norm``: no final norm in this family, ignored. Aux heads are not run.

        ``indices`` follow the one rule of ``_features.feature_take_indices`` (distinct, increasing,
        in range of the stages the model has: fewer after ``prune_intermediate_layers``)."""
        where = f"{type(self).__name__}.forward_intermediates"
        for arg, value in (
            ("norm", norm),
            ("stop_early", stop_early),
            ("intermediates_only", intermediates_only),
        ):
            check_arg(where, arg, value, bool)
        if output_fmt != "NCHW":
            raise UsageError(f"{where}: output_fmt must be 'NCHW', got {excerpt(output_fmt)}")
        take, max_index = feature_take_indices(len(self.feature_ends), indices, f"{where}: indices")
        self._check_input(x, self.min_input_size)
        last = self.feature_ends[max_index] if stop_early else None
        x, feats, _ = self._run_trunk(x, last=last, take=[self.feature_ends[i] for i in take])
        return feats if intermediates_only else (x, feats)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's: the trunk modules after the last stage in ``indices`` become ``nn.Identity``; then
        (``prune_head``, or when the trunk was cut) the aux heads go and the head becomes
        ``reset_classifier(0, "")``, so ``forward`` returns that stage's map. Returns the stages kept.

        The model then has the stages up to the last one kept (``feature_info`` lists those): a
        later index beyond them is out of range (as timm's models that cut their block list), and
        a negative one counts from the new last stage."""
        where = f"{type(self).__name__}.prune_intermediate_layers"
        for arg, value in (("prune_norm", prune_norm), ("prune_head", prune_head)):
            check_arg(where, arg, value, bool)
        take, max_index = feature_take_indices(len(self.feature_ends), indices, f"{where}: indices")
        prune_end = max_index < len(self.feature_ends) - 1
        for name in self.layer_names[self.feature_ends[max_index] + 1 :]:
            self.set_submodule(name, nn.Identity())
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            # the stages cut are gone: indices past them must fail, not return the last kept map
            self.feature_info = self.feature_info[: max_index + 1]
            self.feature_ends = self.feature_ends[: max_index + 1]
        if prune_head or prune_end:
            for name in self.default_cfg.get("aux_modules", ()):
                if getattr(self, name, None) is not None:
                    setattr(self, name, None)
            if hasattr(self, "aux_logits"):
                self.aux_logits = False
            self.default_cfg = {**self.default_cfg, "aux_classifiers": ()}
            self.reset_classifier(0, "")
        return take

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Gradient checkpointing per trunk block (``torch.utils.checkpoint``, non-reentrant) in
        training steps: the same outputs and gradients, activations recomputed in backward instead
        of kept (``_features.run_module``)."""
        check_arg(type(self).__name__, "set_grad_checkpointing(enable)", enable, bool)
        self.grad_checkpointing = enable

    # ---------------------------------------------------------------------------------------------
    # Head

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.default_cfg["classifier"])

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier (and aux classifiers) for ``num_classes`` outputs (0: pooled features),
        for fine-tuning; ``global_pool`` ("avg", "max", "avgmax", "": none) replaces the pooling.
        New layers take the model's device, dtype and train/eval mode.

        Every argument is checked before anything changes (``num_classes`` an int >= 0, not a bool;
        ``global_pool`` one of ``GLOBAL_POOLS``, ``""`` only with 0 classes): a refused call, or a
        head too large to allocate, leaves the model as it was."""
        where = f"{type(self).__name__}.reset_classifier"
        check_arg(where, "num_classes", num_classes, int)
        check_arg(where, "global_pool", global_pool, str | None)
        if num_classes < 0:
            raise UsageError(f"{where}: num_classes must be 0 (features) or more, got {num_classes}")
        num_classes = int(num_classes)
        pool_type = self.global_pool_type if global_pool is None else global_pool
        pool = make_global_pool(pool_type, num_classes)
        saved = _module_state(self)
        try:
            self._swap_head(pool, pool_type, num_classes)
        except (RuntimeError, MemoryError) as e:
            _restore_module_state(saved)
            if isinstance(e, RuntimeError) and not any(s in str(e) for s in ("allocate", "out of memory")):
                raise
            raise UsageError(
                f"{where}: cannot allocate a {num_classes}-class head ({first_line(e, 120)})"
            ) from None
        except BaseException:
            _restore_module_state(saved)
            raise

    def _swap_head(self, pool: nn.Module, pool_type: str, num_classes: int) -> None:
        old = list(self.parameters())  # held, so that no new parameter can reuse a freed one's id
        before = {id(p) for p in old}
        ref = old[0] if old else None
        setattr(self, self._pool_attr, pool)
        self.global_pool_type = pool_type
        self.num_classes = num_classes
        self._reset_heads(num_classes)
        if ref is not None:
            for m in self.modules():
                if any(id(p) not in before for p in m.parameters(recurse=False)):
                    m.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        del old
        self.train(self.training)
        self.default_cfg = {**self.default_cfg, "num_classes": num_classes}

    def _pool_flatten(self, x: Tensor) -> Tensor:
        """N x C after a global pool; the map as it is without one (``global_pool=""``)."""
        return torch.flatten(x, 1) if self.global_pool_type != "" else x


_ModuleState = list[tuple[nn.Module, dict[str, Any], dict[str, Any]]]


def _module_state(model: nn.Module) -> _ModuleState:
    """Each module's children and plain attributes (shallow copies): what a head swap changes, so a
    swap that fails half-way can be undone."""
    return [
        (m, dict(m._modules), {k: v for k, v in vars(m).items() if not k.startswith("_")})
        for m in model.modules()
    ]


def _restore_module_state(saved: _ModuleState) -> None:
    for m, children, attrs in saved:
        m._modules.clear()
        m._modules.update(children)
        for k in [k for k in vars(m) if not k.startswith("_") and k not in attrs]:
            delattr(m, k)
        vars(m).update(attrs)


def make_classifier(num_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or Identity for ``num_classes=0`` (features/embeddings, timm convention)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
