"""A fast inference path: ``optimize_for_inference(model, example_input) -> callable``.

    >>> fast = inceptionnet.optimize_for_inference(model, torch.randn(32, 3, 224, 224))
    >>> fast.backend, fast.max_abs_diff
    ('onnxruntime', 3.1e-06)
    >>> logits = fast(x)

What the backends do, each on a copy (the model passed in is untouched):

* ``"eager"``: BatchNorm folded into the preceding conv (``export.fold_bn``); the parallel 1x1 convs
  of a block that read the same input (GoogLeNet's branch1, 3x3-reduce and 5x5-reduce; Inception-v3's
  ``branch1x1`` / ``*_1`` reduces; the same pattern in the other families) merged into one conv and
  its activation, followed by a channel split (``merge_parallel_convs``); channels_last memory
  format; denormals flushed to zero during calls (``engine.flush_denormal``).
* ``"compile"``: ``torch.compile`` of the eager-optimized model with Inductor's ``freezing`` (weights
  become constants: conv weights prepacked for oneDNN, constant folding); slow to create (a minute
  or more on 2 cores).
* ``"onnxruntime"``: the BN-folded graph (not the 1x1 merge: ORT runs the merged graph's splits
  slower than separate convs) exported with the project's verified exporter
  (``export.export_model``), run in an ONNX Runtime session with ``torch.get_num_threads()`` intra-op
  threads and denormals flushed. CPU only.
* ``dtype=torch.bfloat16``: ``"eager"`` / ``"compile"`` on a bf16 copy of the optimized model (weights
  stored in bf16 once, instead of autocast casting every weight on every call; with BN folded there
  is no fp32-only layer left), input cast to bf16, logits returned as fp32. ``bf16_supported()`` says
  whether the CPU computes bf16 natively (AVX512-BF16/AMX); without it bf16 is emulated and slow.
* ``"auto"``: builds the candidates (default: eager and onnxruntime for fp32, eager for bf16;
  ``candidates=`` to add ``"compile"``), times each on the example input and keeps the fastest.

Every backend is checked against the original model in eval mode, eager fp32, on the example input
when it is created: fp32 must agree to ``max abs diff <= atol + rtol * max|reference|`` (atol 1e-4,
rtol 1e-5, as ``export``); bf16 outputs must be finite and of the right shape, and the top-1 agreement
with fp32 is stored in ``.top1_agreement`` (``min_top1_agreement=`` turns it into a check).
``FastInferenceError`` when a check fails.
"""

from __future__ import annotations

import copy
import operator
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .engine import bf16_supported, flush_denormal
from .errors import InceptionNetError
from .export import fold_bn

__all__ = [
    "BACKENDS",
    "FastInferenceError",
    "FastModel",
    "bf16_supported",
    "merge_parallel_convs",
    "optimize_for_inference",
    "optimize_module",
]

BACKENDS = ("auto", "eager", "compile", "onnxruntime")
ATOL = 1e-4
RTOL = 1e-5
_ACTS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.ReLU6, nn.GELU, nn.SiLU)
_FN_ACTS = (F.relu, torch.relu)


class FastInferenceError(InceptionNetError, RuntimeError):
    """An optimized backend whose outputs do not match the eager model, or that cannot be built."""


# --------------------------------------------------------------------------------------------------
# Graph rewrites: merge the parallel 1x1 convs of a block


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
    return isinstance(first, _ACTS) and all(
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


# --------------------------------------------------------------------------------------------------
# The callable


class FastModel:
    """The callable ``optimize_for_inference`` returns: ``fast(x) -> logits``.

    Attributes: ``backend``, ``dtype``, ``max_abs_diff`` / ``tolerance`` (vs eager fp32 on the example
    input), ``top1_agreement`` (fraction of the example batch whose argmax matches eager fp32),
    ``merged_convs`` (1x1 convs merged), ``setup_s`` (seconds to build and check), ``timings`` (for
    ``backend="auto"``: median seconds per call of each candidate, or the error text).
    """

    def __init__(
        self, fn: Callable[[Tensor], Tensor], backend: str, dtype: torch.dtype, merged_convs: int
    ) -> None:
        self._fn = fn
        self.backend = backend
        self.dtype = dtype
        self.merged_convs = merged_convs
        self.max_abs_diff = float("nan")
        self.tolerance = float("nan")
        self.top1_agreement = float("nan")
        self.setup_s = 0.0
        self.timings: dict[str, float | str] = {}

    def __call__(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def __repr__(self) -> str:
        return (
            f"FastModel(backend={self.backend!r}, dtype={self.dtype}, max_abs_diff={self.max_abs_diff:.2e}, "
            f"top1_agreement={self.top1_agreement:.3f})"
        )


def _torch_fn(module: Callable[..., Any], dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """``module`` holds its weights in ``dtype`` already; the input is cast to match."""

    def run(x: Tensor) -> Tensor:
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), flush_denormal():
            out = module(x)
        assert isinstance(out, Tensor)
        return out.float()

    return run


def _ort_fn(opt: nn.Module, reference: nn.Module, example: Tensor, quiet: bool) -> Callable[[Tensor], Tensor]:
    from .export import export_model, ort_session

    if example.device.type != "cpu":
        raise FastInferenceError("the onnxruntime backend runs on the CPU; pass a CPU model and input")
    cpu_opt = copy.deepcopy(opt).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    with tempfile.TemporaryDirectory(prefix="inceptionnet-fast-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            export_model(
                cpu_opt, path, input_size=(int(example.shape[2]), int(example.shape[3])),
                in_chans=int(example.shape[1]), reference=reference, atol=ATOL, rtol=RTOL, quiet=quiet,
            )  # fmt: skip
        except InceptionNetError as e:
            raise FastInferenceError(f"onnxruntime backend: {e}") from e
        sess = ort_session(path, config={"session.set_denormal_as_zero": "1"})
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x: Tensor) -> Tensor:
        arr = x.detach().cpu().contiguous().float().numpy()
        return torch.from_numpy(sess.run([out_name], {in_name: arr})[0])

    return run


def _check(fast: FastModel, got: Tensor, ref: Tensor) -> None:
    what = f"{fast.backend} backend ({str(fast.dtype).removeprefix('torch.')})"
    if tuple(got.shape) != tuple(ref.shape):
        raise FastInferenceError(
            f"{what}: output shape {tuple(got.shape)} differs from eager {tuple(ref.shape)}"
        )
    got, ref = got.float().cpu(), ref.float().cpu()
    fast.max_abs_diff = float((got - ref).abs().max()) if ref.numel() else 0.0
    fast.tolerance = ATOL + RTOL * (float(ref.abs().max()) if ref.numel() else 0.0)
    if ref.dim() == 2 and ref.shape[1] > 0:
        fast.top1_agreement = float((got.argmax(1) == ref.argmax(1)).float().mean())
    if fast.dtype == torch.float32:
        if not fast.max_abs_diff <= fast.tolerance:  # also NaN
            raise FastInferenceError(
                f"{what}: max abs diff {fast.max_abs_diff:.3g} vs eager fp32 exceeds the tolerance "
                f"{fast.tolerance:.3g} (atol {ATOL:g} + rtol {RTOL:g} x max|output|)"
            )
    elif not bool(torch.isfinite(got).all()):
        raise FastInferenceError(f"{what}: non-finite outputs where eager fp32 has finite ones")


def _median_time(fn: Callable[[Tensor], Tensor], x: Tensor, iters: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def optimize_for_inference(
    model: nn.Module,
    example_input: Tensor,
    *,
    backend: str = "auto",
    dtype: torch.dtype = torch.float32,
    candidates: Sequence[str] | None = None,
    min_top1_agreement: float | None = None,
    auto_iters: int = 3,
    quiet: bool = True,
) -> FastModel:
    """A fast callable computing ``model(x)`` (logits) for inputs shaped like ``example_input``.

    ``backend``: "eager", "compile", "onnxruntime" or "auto" (the fastest of ``candidates``, each
    timed ``auto_iters`` times on ``example_input`` after a warm-up). ``dtype``: ``torch.float32``
    or ``torch.bfloat16`` (autocast; eager/compile only). The result is checked against the eager
    fp32 model on ``example_input`` (see the module docstring); ``FastInferenceError`` otherwise.
    ``model`` itself is not modified.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if example_input.dim() != 4:
        raise ValueError(f"example_input must be N x C x H x W, got shape {tuple(example_input.shape)}")
    if backend == "onnxruntime" and dtype != torch.float32:
        raise ValueError("the onnxruntime backend runs fp32 only; use backend='eager' or 'compile' for bf16")
    t0 = time.perf_counter()
    reference = copy.deepcopy(model).eval()
    with torch.inference_mode(), flush_denormal():
        ref = reference(example_input)
    if not isinstance(ref, Tensor):
        raise FastInferenceError(f"the model returned {type(ref).__name__}, not a logits Tensor")
    opt, merged = optimize_module(model)
    opt = opt.to(dtype)
    device = example_input.device

    def build(name: str) -> FastModel:
        start = time.perf_counter()
        if name == "eager":
            fn = _torch_fn(opt, dtype)
        elif name == "compile":
            # freezing: parameters become graph constants, so Inductor folds them and prepacks the
            # conv weights for oneDNN once (it applies under inference_mode, as _torch_fn calls it)
            # (compiling does not modify ``opt``, so eager and compile candidates share its weights)
            fn = _torch_fn(torch.compile(opt, options={"freezing": True}), dtype)
        else:
            # ORT fuses conv+relu itself and runs the merged-1x1 graph slower (its Split copies):
            # export the BN-folded graph without the merge
            fn = _ort_fn(fold_bn(model).eval(), reference, example_input, quiet)
        fast = FastModel(fn, name, dtype, 0 if name == "onnxruntime" else merged)
        try:
            got = fast(example_input)
        except InceptionNetError:
            raise
        except Exception as e:
            raise FastInferenceError(f"{name} backend failed on the example input: {e}") from e
        _check(fast, got, ref)
        if min_top1_agreement is not None and not fast.top1_agreement >= min_top1_agreement:
            raise FastInferenceError(
                f"{name} backend ({dtype}): top-1 agreement with eager fp32 {fast.top1_agreement:.3f} "
                f"< {min_top1_agreement}"
            )
        fast.setup_s = time.perf_counter() - start
        return fast

    if backend != "auto":
        fast = build(backend)
        fast.setup_s = time.perf_counter() - t0
        return fast
    names = list(candidates or (["eager", "onnxruntime"] if dtype == torch.float32 else ["eager"]))
    if dtype != torch.float32:
        names = [n for n in names if n != "onnxruntime"]
    if device.type != "cpu":
        names = [n for n in names if n != "onnxruntime"]
    best: FastModel | None = None  # slower candidates are dropped as soon as they lose
    best_t = float("inf")
    timings: dict[str, float | str] = {}
    errors = []
    for name in names:
        if name not in BACKENDS[1:]:
            raise ValueError(f"unknown candidate {name!r}; choose from {', '.join(BACKENDS[1:])}")
        try:
            fast = build(name)
        except (FastInferenceError, ImportError) as e:
            timings[name] = f"error: {e}"
            errors.append(str(e))
            continue
        t = _median_time(fast, example_input, max(1, auto_iters))
        timings[name] = t
        if t < best_t:
            best, best_t = fast, t
        del fast
    if best is None:
        raise FastInferenceError("no backend passed its check: " + "; ".join(errors))
    best.timings = timings
    best.setup_s = time.perf_counter() - t0
    return best
