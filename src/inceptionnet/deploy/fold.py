"""Graph work before any engine: BatchNorm folded into the preceding conv, and the parallel 1x1
convs of an Inception block that read the same input merged into one wider conv (then a split).

Both return copies in eval mode and leave the model passed in untouched; ``optimize_module`` does
both and sets channels_last, the layout oneDNN's convolutions prefer.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.layers import ACT_MODULES

M = TypeVar("M", bound=nn.Module)


def fold_bn(model: M) -> M:
    """A copy of ``model`` in eval mode with each BatchNorm2d that directly follows a Conv2d inside an
    ``nn.Sequential`` (``ConvBNAct``, BN-Inception's separable stem) folded into the conv's weight and
    bias; the BN becomes ``nn.Identity``. The original is untouched. For inference only: the running
    statistics are baked in. BatchNorm1d after a Linear (Inception-ResNet-v1's ``last_bn``) is kept.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    # collect first: replacing children while ``modules()`` walks them would skip some
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.running_mean is not None
                and bn.running_var is not None
            ):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()  # same key and position, so forward order is kept
    return folded


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


_FN_ACTS = (F.relu, torch.relu)


def _is_1x1(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.stride == (1, 1)
        and m.padding in ((0, 0), "valid")
        and m.dilation == (1, 1)
        and m.groups == 1
    )


def _count_1x1(module: nn.Module) -> int:
    return sum(_is_1x1(m) for m in module.modules())


def _same_act(mods: Sequence[nn.Module]) -> bool:
    first = mods[0]
    return isinstance(first, ACT_MODULES) and all(
        type(m) is type(first) and m.extra_repr() == first.extra_repr() for m in mods
    )


def _merge_graph(gm: fx.GraphModule) -> int:
    """Merge, in a traced block, the 1x1 convs (stride 1, no groups) that read the same node into one
    conv (+ their common activation) followed by ``torch.split``. Returns the number of convs merged."""
    graph = gm.graph
    mods = dict(gm.named_modules())
    for node in list(graph.nodes):  # drop Identity calls (the folded BNs)
        if node.op == "call_module" and isinstance(mods.get(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    groups: dict[fx.Node, list[fx.Node]] = {}
    for node in graph.nodes:
        if (
            node.op == "call_module"
            and _is_1x1(mods[node.target])
            and len(node.args) == 1
            and not node.kwargs
            and isinstance(node.args[0], fx.Node)
        ):
            groups.setdefault(node.args[0], []).append(node)
    merged = 0
    for i, (src, convs) in enumerate((s, c) for s, c in groups.items() if len(c) > 1):
        cmods: list[nn.Conv2d] = [mods[c.target] for c in convs]
        if len({(m.in_channels, m.padding_mode, m.weight.dtype, m.weight.device) for m in cmods}) != 1:
            continue
        # the activation each conv feeds alone, when they all feed the same kind: merged too
        users = [list(c.users) for c in convs]
        acts: list[fx.Node] | None = None
        if all(len(u) == 1 for u in users):
            cand = [u[0] for u in users]
            if all(n.op == "call_module" and n.args == (c,) for n, c in zip(cand, convs)):
                if _same_act([mods[n.target] for n in cand]):
                    acts = cand
            elif (
                all(
                    n.op == "call_function" and n.target in _FN_ACTS and n.args[:1] == (c,)
                    for n, c in zip(cand, convs)
                )
                and len({(n.target, tuple(n.args[1:]), tuple(n.kwargs.items())) for n in cand}) == 1
            ):
                acts = cand
        out_sizes = [m.out_channels for m in cmods]
        conv = nn.Conv2d(
            cmods[0].in_channels, sum(out_sizes), 1, bias=True, padding_mode=cmods[0].padding_mode
        )
        conv = conv.to(device=cmods[0].weight.device, dtype=cmods[0].weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([m.weight for m in cmods], 0))
            conv.bias.copy_(  # type: ignore[union-attr]
                torch.cat(
                    [m.bias if m.bias is not None else m.weight.new_zeros(m.out_channels) for m in cmods]
                )
            )
        name = f"merged_1x1_{i}"
        gm.add_submodule(name, conv)
        with graph.inserting_before(convs[0]):
            out = graph.call_module(name, (src,))
            if acts is not None:
                a0 = acts[0]
                if a0.op == "call_module":
                    gm.add_submodule(f"{name}_act", copy.deepcopy(mods[a0.target]))
                    out = graph.call_module(f"{name}_act", (out,))
                else:
                    out = graph.call_function(a0.target, (out, *a0.args[1:]), dict(a0.kwargs))  # type: ignore[arg-type]
            parts = graph.call_function(torch.split, (out, out_sizes, 1))
            pieces = [graph.call_function(operator.getitem, (parts, j)) for j in range(len(convs))]
        ends = acts if acts is not None else convs
        for end, piece in zip(ends, pieces):
            end.replace_all_uses_with(piece)
        for n in (acts or []) + convs:
            graph.erase_node(n)
        merged += len(convs)
    if merged:
        graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return merged


def merge_parallel_convs(model: nn.Module) -> tuple[nn.Module, int]:
    """Rewrite, in place, each block of ``model`` whose parallel 1x1 convs read the same input (checked
    on its torch.fx graph) into one merged conv + split. For inference (eval mode; fold BN first, or
    the BNs between conv and activation stop the activation merge). Returns the model and the number of
    convs merged. Blocks that torch.fx cannot trace are left as they are; the root module is never
    traced (its input checks are not traceable)."""
    done: list[str] = []
    total = 0
    for name, mod in list(model.named_modules()):
        if not name or any(name.startswith(d + ".") for d in done):
            continue
        if type(mod).__module__.startswith("torch.") or _count_1x1(mod) < 2:
            continue
        try:
            gm = fx.symbolic_trace(mod)
        except Exception:  # data-dependent control flow etc.: leave the block as it is
            continue
        n = _merge_graph(gm)
        if not n:
            continue
        gm.train(mod.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, gm)
        done.append(name)
        total += n
    return model, total


def optimize_module(model: nn.Module, *, channels_last: bool = True) -> tuple[nn.Module, int]:
    """The eager-optimized copy: BN folded, parallel 1x1 convs merged, channels_last; eval mode.
    Returns it and the number of 1x1 convs merged."""
    opt, merged = merge_parallel_convs(fold_bn(model))
    opt.eval()
    if channels_last:
        opt = opt.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return opt, merged
