"""The backbone API shared by every model (timm's, so timm and torchvision code takes our models).

A model declares its trunk once (``InceptionBase.init_stages``): the modules of ``forward_features``
in forward order (``layer_names``), which of them end a feature stage (``feature_info``: channels,
reduction, module, as timm's) and where the aux heads read. Everything here works from that
declaration, for all models alike:

* ``feature_take_indices``: the one index rule, timm's (``None`` all, an int the last n, a list,
  negative from the end) plus distinct and increasing stages;
* ``FeatureInfo``: timm's accessor (``channels()``, ``reduction()``, ``module_name()``,
  ``get_dicts()``) over the stages an extractor returns;
* ``FeatureListNet`` / ``FeatureDictNet``: ``create_model(name, features_only=True)``; the trunk
  modules up to the last stage asked for, under the model's own names (``features.3`` ->
  ``features_3``, as timm's ``flatten_sequential``), so the state_dict keys are the model's;
* ``FeatureGetterNet``: ``feature_cls="getter"``, the pruned model's ``forward_intermediates``;
* ``run_module``: one trunk module, through ``torch.utils.checkpoint`` when gradient checkpointing
  is on (blocks of a plain ``nn.Sequential`` one by one; BatchNorm statistics updated once).

This module imports only ``errors`` and the registry's argument check (``layers`` imports it).
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from ..errors import UsageError, excerpt
from ._registry import check_arg

__all__ = [
    "FEATURE_CLASSES",
    "FeatureDictNet",
    "FeatureGetterNet",
    "FeatureInfo",
    "FeatureListNet",
    "feature_take_indices",
    "features_model",
    "fx_symbolic_tracing",
    "run_module",
]

Indices = int | Sequence[int] | None


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def resolved_annotations(fn: _Fn) -> _Fn:
    """``fn`` with its annotations as the types themselves, not the strings this module's
    ``from __future__ import annotations`` leaves. ``torch.fx`` copies a traced ``forward``'s
    annotations into the code it generates: the string ``'Tensor'`` became the name ``_Tensor_``,
    which ``torch.jit.script`` of the GraphModule cannot resolve (timm's
    ``test_model_forward_fx_torchscript``)."""
    fn.__annotations__ = typing.get_type_hints(fn)
    return fn


def fx_symbolic_tracing() -> bool:
    """True while ``torch.fx`` (``symbolic_trace``, torchvision's feature extraction tracer) traces
    the caller; the eager-only input checks and the ``return_aux`` branch are skipped then."""
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing

    return bool(is_fx_symbolic_tracing())


def feature_take_indices(
    num_features: int, indices: Indices = None, name: str = "indices"
) -> tuple[list[int], int]:
    """The stage indices to take and the largest of them, by the one rule of every backbone entry
    point (``forward_intermediates``, ``prune_intermediate_layers``, ``features_only``'s
    ``out_indices``, the feature extractors); ``name`` is the argument an error names.

    timm's rule: ``None`` all stages; an int ``n`` the last ``n`` (1 to ``num_features``); a list,
    tuple or range of ints, negative ones from the end, each in range. One rule more, where timm has
    none: the stages, resolved, must be distinct and increasing, the order the trunk computes them
    and every extractor returns them (timm returns maps in stage order too, but its extractors' and
    ``feature_info``'s order is the order given). Bools, floats and strings are not indices. Any
    break of the rule is one ``UsageError``."""
    if indices is None:
        return list(range(num_features)), num_features - 1
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        n = int(indices)
        if not 0 < n <= num_features:
            raise UsageError(
                f"{name}={n}: last-n ({n}) is out of range (1 to {num_features}); the model has "
                f"{num_features} feature stages"
            )
        return list(range(num_features - n, num_features)), num_features - 1
    if not isinstance(indices, list | tuple | range):
        raise UsageError(
            f"{name} must be None, an int (the last n stages) or a list of stage indices, got "
            f"{excerpt(indices)} ({type(indices).__name__})"
        )
    return _take_listed(num_features, indices, name)


def _take_listed(num_features: int, indices: Sequence[Any], name: str) -> tuple[list[int], int]:
    if not indices:
        raise UsageError(f"{name}: no feature index given; pass stage indices such as [{num_features - 1}]")
    if len(indices) > num_features:  # so more than there are is refused before a long walk
        raise UsageError(f"{name} lists {len(indices):,} stages; the model has {num_features}")
    take = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise UsageError(
                f"{name}: {excerpt(i)} ({type(i).__name__}) is not a stage index; stage indices are ints"
            )
        idx = num_features + int(i) if i < 0 else int(i)
        if not 0 <= idx < num_features:
            raise UsageError(
                f"{name}: feature index {int(i)} is out of range (-{num_features} to {num_features - 1}); "
                f"the model has {num_features} feature stages"
            )
        take.append(idx)
    if any(b <= a for a, b in zip(take, take[1:])):
        what = "repeats a stage" if len(set(take)) < len(take) else "is not in stage order"
        raise UsageError(
            f"{name} {excerpt(list(indices))} {what}: stages are returned in the order the trunk computes "
            f"them, once each; pass {sorted(set(take))}"
        )
    return take, take[-1]


def _out_indices(out_indices: int | Sequence[int]) -> tuple[int, ...]:
    return tuple(range(-out_indices, 0)) if isinstance(out_indices, int) else tuple(out_indices)


class FeatureInfo:
    """The stages an extractor returns (timm's ``FeatureInfo``): ``channels()``, ``reduction()``,
    ``module_name()``, ``get(key)``, ``get_dicts()``; with ``idx`` they answer for those stages of
    the whole model instead."""

    def __init__(self, feature_info: Sequence[dict[str, Any]], out_indices: int | Sequence[int]) -> None:
        prev = 1
        info = [dict(fi) for fi in feature_info]
        for i, fi in enumerate(info):
            if not fi.get("num_chs", 0) > 0 or fi.get("reduction", 0) < prev or "module" not in fi:
                raise ValueError(f"feature_info entry {i} is not valid: {fi}")
            prev = fi["reduction"]
            fi.setdefault("index", i)
        feature_take_indices(len(info), out_indices, "out_indices")  # the one index rule, first
        self.out_indices = _out_indices(out_indices)
        self.info = info

    def from_other(self, out_indices: int | Sequence[int]) -> FeatureInfo:
        return FeatureInfo(copy.deepcopy(self.info), out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> Any:
        def pick(i: int) -> dict[str, Any]:
            return self.info[i] if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        if isinstance(idx, int):
            return pick(idx)
        return [pick(i) for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing


@contextlib.contextmanager
def _bn_stats_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics as they were before the block: checkpointing runs a block's
    forward twice (once more in backward), and the second run must not count the batch again."""
    saved = [
        (
            m,
            [
                b.clone() if b is not None else None
                for b in (m.running_mean, m.running_var, m.num_batches_tracked)
            ],
        )
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in saved:
                for cur, old in zip((m.running_mean, m.running_var, m.num_batches_tracked), bufs):
                    if cur is not None and old is not None:
                        cur.copy_(old)


def _checkpointed(module: nn.Module, x: Tensor) -> Tensor:
    calls = 0

    def run(inp: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return module(inp)
        with _bn_stats_kept(module):  # the recomputation in backward
            return module(inp)

    out = torch.utils.checkpoint.checkpoint(run, x, use_reentrant=False)
    assert isinstance(out, Tensor)
    return out


def run_module(module: nn.Module, x: Tensor, checkpointing: bool = False) -> Tensor:
    """``module(x)``; with ``checkpointing`` (and autograd recording) through
    ``torch.utils.checkpoint`` (non-reentrant): only the block's input is kept for backward and its
    inside is recomputed there. A plain ``nn.Sequential`` of blocks (Inception-ResNet's ``repeat``)
    is checkpointed block by block; parameter-free modules (pools, Identity) run as they are."""
    if not checkpointing or not torch.is_grad_enabled():
        return module(x)
    if type(module) is nn.Sequential:
        for child in module:
            x = run_module(child, x, checkpointing)
        return x
    if next(module.parameters(), None) is None:
        return module(x)
    return _checkpointed(module, x)


# --------------------------------------------------------------------------------------------------
# Feature extractors (``create_model(name, features_only=True, feature_cls=...)``)


class FeatureDictNet(nn.ModuleDict):
    """The model's trunk up to the last stage asked for, returning ``{str(index): N x C x H x W}``.

    The modules are the model's own (the same objects, so weights loaded before are kept), under
    its names (dots as underscores: ``features.3`` -> ``features_3``); a model that re-normalizes
    its input (``transform_input=True``) gets a first entry ``transform_input``. Aux heads and the
    classifier are left out. ``out_map`` renames the outputs (timm's argument).
    """

    def __init__(
        self,
        model: Any,  # an InceptionBase (layers imports this module)
        out_indices: int | Sequence[int] = (0, 1, 2, 3, 4),
        out_map: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.feature_info = FeatureInfo(_model_feature_info(model), out_indices)
        self.grad_checkpointing = False
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        transform = model.input_transform()
        if transform is not None:
            layers["transform_input"] = transform
        wanted = {
            name: (out_map[i] if out_map is not None else str(idx))
            for i, (name, idx) in enumerate(
                zip(self.feature_info.module_name(), self.feature_info.out_indices)
            )
        }
        self.return_layers: dict[str, str] = {}
        remaining = set(wanted)
        for name in model.layer_names:
            key = name.replace(".", "_")
            layers[key] = model.get_submodule(name)
            if name in remaining:
                self.return_layers[key] = wanted[name]
                remaining.discard(name)
            if not remaining:
                break
        if remaining:
            raise ValueError(f"stages {sorted(remaining)} are not modules of the model's trunk")
        self.update(layers)
        # eager input checks with the model's message (dtype and device read at each call)
        self._input_check: Callable[..., None] | None = getattr(model, "input_checker", lambda: None)()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        check_arg(type(self).__name__, "set_grad_checkpointing(enable)", enable, bool)
        self.grad_checkpointing = enable

    def _collect(self, x: Tensor) -> dict[str, Tensor]:
        if not torch.jit.is_scripting():  # noqa: SIM102 (nested: see InceptionBase.forward)
            if self._input_check is not None and not fx_symbolic_tracing():
                p = next(self.parameters(), None)
                self._input_check(
                    x, dtype=None if p is None else p.dtype, device=None if p is None else p.device
                )
        out: dict[str, Tensor] = {}
        for name, module in self.items():
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = run_module(module, x, True)
            else:
                x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out

    @resolved_annotations
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self._collect(x)


class FeatureListNet(FeatureDictNet):
    """``FeatureDictNet`` returning a list (timm's default ``features_only`` extractor)."""

    @resolved_annotations
    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        return list(self._collect(x).values())


class FeatureGetterNet(nn.Module):
    """``feature_cls="getter"`` (timm's ``FeatureGetterNet``): the model, pruned of the layers after
    the last stage asked for and of its head (``prune_intermediate_layers``), called through
    ``forward_intermediates(..., intermediates_only=True)``. State_dict keys gain ``model.``."""

    def __init__(
        self,
        model: Any,  # an InceptionBase
        out_indices: int | Sequence[int] = 4,
        out_map: Sequence[str] | None = None,
        return_dict: bool = False,
        norm: bool = False,
        prune: bool = True,
    ) -> None:
        super().__init__()
        for arg, value in (("return_dict", return_dict), ("norm", norm), ("prune", prune)):
            check_arg("FeatureGetterNet", arg, value, bool)
        feature_take_indices(len(_model_feature_info(model)), out_indices, "out_indices")
        if prune:
            out_indices = model.prune_intermediate_layers(out_indices, prune_norm=not norm)
        self.feature_info = FeatureInfo(_model_feature_info(model), out_indices)
        self.model = model
        self.out_indices = list(self.feature_info.out_indices)
        self.out_map = out_map
        self.return_dict = return_dict
        self.norm = norm

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    @resolved_annotations
    def forward(self, x: Tensor) -> Any:
        feats = self.model.forward_intermediates(
            x, indices=self.out_indices, norm=self.norm, intermediates_only=True
        )
        if not self.return_dict:
            return feats
        keys = self.out_map if self.out_map is not None else [str(i) for i in self.out_indices]
        return dict(zip(keys, feats))


FEATURE_CLASSES: dict[str, type[nn.Module]] = {
    "list": FeatureListNet,
    "dict": FeatureDictNet,
    "getter": FeatureGetterNet,
}


def _model_feature_info(model: Any) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    if isinstance(info, FeatureInfo):
        return info.info
    if not isinstance(info, list | tuple) or not info:
        raise UsageError(f"{type(model).__name__} declares no feature stages (feature_info)")
    return list(info)


def features_model(
    model: Any,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str | type[nn.Module] | None = None,
) -> nn.Module:
    """The feature extractor of ``create_model(..., features_only=True)``: ``feature_cls`` "list"
    (default), "dict", "getter" or one of those classes; ``out_indices`` default: every stage. It
    carries the model's ``default_cfg`` / ``pretrained_cfg`` without the classifier entries (as timm)
    and its ``in_chans``, so ``timm.data.resolve_model_data_config`` and ``data.InputConfig.from_model``
    read the right preprocessing."""
    if feature_cls is None:
        cls: type[nn.Module] = FeatureListNet
    elif isinstance(feature_cls, str):
        if feature_cls.lower() not in FEATURE_CLASSES:
            raise UsageError(
                f"unknown feature_cls {feature_cls!r}; choose one of {', '.join(FEATURE_CLASSES)}"
            )
        cls = FEATURE_CLASSES[feature_cls.lower()]
    elif isinstance(feature_cls, type) and issubclass(feature_cls, tuple(FEATURE_CLASSES.values())):
        cls = feature_cls
    else:
        raise UsageError(f"feature_cls must be one of {', '.join(FEATURE_CLASSES)}, got {feature_cls!r}")
    take, _ = feature_take_indices(len(_model_feature_info(model)), out_indices, "out_indices")
    net: Any = cls(model, out_indices=take)
    cfg = {
        k: v
        for k, v in getattr(model, "default_cfg", {}).items()
        if k not in ("num_classes", "classifier", "global_pool")
    }
    net.default_cfg = net.pretrained_cfg = cfg
    net.in_chans = getattr(model, "in_chans", 3)
    return net
