"""A fast inference path: ``optimize_for_inference(model, example_input) -> callable``.

    >>> fast = inceptionnet.optimize_for_inference(model, torch.randn(32, 3, 224, 224))
    >>> fast.backend, fast.max_abs_diff
    ('onnxruntime', 3.1e-06)
    >>> logits = fast(x)

What the backends do, each on a copy (the model passed in is untouched):

* ``"eager"``: BatchNorm folded into the preceding conv (``deploy.fold.fold_bn``); the parallel 1x1 convs
  of a block that read the same input (GoogLeNet's branch1, 3x3-reduce and 5x5-reduce; Inception-v3's
  ``branch1x1`` / ``*_1`` reduces; the same pattern in the other families) merged into one conv and
  its activation, followed by a channel split (``deploy.fold.merge_parallel_convs``); channels_last memory
  format; denormals flushed to zero during calls (``runtime.flush_denormal``).
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
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import FastInferenceError, InceptionNetError
from ..runtime import flush_denormal, median_time
from .fold import fold_bn, optimize_module
from .verify import ATOL, RTOL, check_close, check_shape, max_abs_diff, tolerance

__all__ = [
    "BACKENDS",
    "FastInferenceError",
    "FastModel",
    "optimize_for_inference",
]

BACKENDS = ("auto", "eager", "compile", "onnxruntime")

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
    check_shape(got, ref, what, FastInferenceError)
    got, ref = got.float().cpu(), ref.float().cpu()
    fast.max_abs_diff, fast.tolerance = max_abs_diff(got, ref), tolerance(ref)
    if ref.dim() == 2 and ref.shape[1] > 0:
        fast.top1_agreement = float((got.argmax(1) == ref.argmax(1)).float().mean())
    if fast.dtype == torch.float32:
        check_close(got, ref, what, against="eager fp32", error=FastInferenceError)
    elif not bool(torch.isfinite(got).all()):
        raise FastInferenceError(f"{what}: non-finite outputs where eager fp32 has finite ones")


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
        t = median_time(partial(fast, example_input), max(1, auto_iters))
        timings[name] = t
        if t < best_t:
            best, best_t = fast, t
        del fast
    if best is None:
        raise FastInferenceError("no backend passed its check: " + "; ".join(errors))
    best.timings = timings
    best.setup_s = time.perf_counter() - t0
    return best
