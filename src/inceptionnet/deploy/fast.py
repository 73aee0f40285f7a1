"""A fast inference path: ``optimize_for_inference(model, example_input) -> callable``.

    >>> fast = inceptionnet.optimize_for_inference(model, torch.randn(32, 3, 224, 224))
    >>> fast.backend, fast.max_abs_diff
    ('onnxruntime', 3.1e-06)
    >>> fast = inceptionnet.optimize_for_inference(model, x, dtype="auto", calibration="fashion_mnist:train")
    >>> fast.backend, fast.dtype, fast.top1_agreement     # the fastest path that kept 99 % top-1
    ('openvino', torch.qint8, 0.996)
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
  threads and denormals flushed. CPU only. int8: that file quantized statically by ORT
  (``deploy.quant.quantize_onnx_qdq``: QDQ, per-channel weights, calibrated on the calibration images).
* ``"openvino"`` (the optional extra ``inceptionnet[openvino]``): the BN-folded, 1x1-merged graph
  exported to ONNX (verified) and compiled by OpenVINO's CPU plugin with its throughput hint for
  batches / latency hint for batch 1 (``deploy.openvino``); bf16 through ``INFERENCE_PRECISION_HINT``;
  int8 through NNCF's post-training quantization calibrated on the calibration images. CPU only.
* ``dtype=torch.bfloat16``: ``"eager"`` / ``"compile"`` on a bf16 copy of the optimized model (weights
  stored in bf16 once, instead of autocast casting every weight on every call; with BN folded there
  is no fp32-only layer left), input cast to bf16, logits returned as fp32. ``bf16_supported()`` says
  whether the CPU computes bf16 natively (AVX512-BF16/AMX); without it bf16 is emulated and slow.
* ``dtype="int8"`` (or ``torch.qint8``): ``"onnxruntime"`` and ``"openvino"``; needs ``calibration``.
  (PyTorch's own PT2E/X86InductorQuantizer route measured about 120 img/s on googlenet batch 32 where
  OpenVINO int8 runs several times that, so it is not a backend here.)
* ``"auto"``: builds the candidates, checks each, times each on the example input and keeps the fastest.
  Default candidates: every installed backend that runs ``dtype`` (fp32: eager, onnxruntime, openvino;
  bf16: eager, openvino; int8: onnxruntime, openvino; compile only when named in ``candidates=``).
  ``dtype="auto"`` adds lower precision only when ``calibration`` is given, because only real images
  can show it keeps the model's answers: fp32 candidates, plus bf16 ones where the CPU has native bf16,
  plus int8 ones. ``candidates=`` names them as ``"openvino-int8"``, ``"eager-bf16"``, ``"onnxruntime"``.

Every backend is checked against the original model in eval mode, eager fp32, on the example input
when it is created: fp32 must agree to ``max abs diff <= atol + rtol * max|reference|`` (atol 1e-4,
rtol 1e-5, as ``export``); bf16 / int8 outputs must be finite and of the right shape. With calibration
images, ``.top1_agreement`` is the fraction of them whose top-1 class matches eager fp32 (else: of the
example batch). ``min_top1_agreement=`` makes it a check; under ``"auto"`` bf16 and int8 candidates are
held to ``AUTO_MIN_TOP1`` (99 %) unless ``min_top1_agreement`` says otherwise, and one that fails is
dropped, with the reason in ``.timings``. ``FastInferenceError`` when a check fails.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import FastInferenceError, InceptionNetError
from ..runtime import flush_denormal, median_time
from .fold import fold_bn, optimize_module
from .quant import (
    DEFAULT_CALIBRATION_SIZE,
    TORCH_DTYPES,
    calibration_images,
    dtype_suffix,
    parse_dtype,
    top1_agreement,
)
from .verify import ATOL, RTOL, check_close, check_shape, max_abs_diff, tolerance

__all__ = [
    "AUTO_MIN_TOP1",
    "BACKENDS",
    "DTYPES",
    "FastInferenceError",
    "FastModel",
    "optimize_for_inference",
]

BACKENDS = ("auto", "eager", "compile", "onnxruntime", "openvino")
# what each backend runs; "auto" picks among them
BACKEND_DTYPES = {
    "eager": ("float32", "bfloat16"),
    "compile": ("float32", "bfloat16"),
    "onnxruntime": ("float32", "int8"),
    "openvino": ("float32", "bfloat16", "int8"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.qint8}  # names a CLI offers
AUTO_MIN_TOP1 = 0.99
CPU_ONLY = ("onnxruntime", "openvino")

# --------------------------------------------------------------------------------------------------
# The callable


class FastModel:
    """The callable ``optimize_for_inference`` returns: ``fast(x) -> logits``.

    Attributes: ``backend``, ``dtype`` (``torch.float32`` / ``torch.bfloat16`` / ``torch.qint8``),
    ``max_abs_diff`` / ``tolerance`` (vs eager fp32 on the example input), ``top1_agreement`` (fraction
    of the calibration images, else of the example batch, whose argmax matches eager fp32),
    ``merged_convs`` (1x1 convs merged), ``setup_s`` (seconds to build and check), ``timings`` (for
    ``backend="auto"``: median seconds per call of each candidate, or why it was dropped).
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


def _export_onnx(graph: nn.Module, reference: nn.Module, example: Tensor, path: Path, quiet: bool) -> None:
    """``graph`` (a rewrite of ``reference``) to a verified fp32 ONNX file with a dynamic batch."""
    from .export import export_model

    cpu = copy.deepcopy(graph).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    try:
        export_model(
            cpu.eval(), path, input_size=(int(example.shape[2]), int(example.shape[3])),
            in_chans=int(example.shape[1]), reference=reference, atol=ATOL, rtol=RTOL, quiet=quiet,
        )  # fmt: skip
    except InceptionNetError as e:
        raise FastInferenceError(f"ONNX export for the engine: {e}") from e


def _ort_fn(
    graph: nn.Module, reference: nn.Module, example: Tensor, calib: Tensor | None, quiet: bool
) -> Callable[[Tensor], Tensor]:
    from .export import ort_runner, ort_session
    from .quant import quantize_onnx_qdq

    with tempfile.TemporaryDirectory(prefix="inceptionnet-fast-") as tmp:
        path = Path(tmp) / "model.onnx"
        _export_onnx(graph, reference, example, path, quiet)
        if calib is not None:  # int8
            quantize_onnx_qdq(path, Path(tmp) / "int8.onnx", calib)
            path = Path(tmp) / "int8.onnx"
        sess = ort_session(path, config={"session.set_denormal_as_zero": "1"})
    return ort_runner(sess)


def _openvino_fn(
    graph: nn.Module, reference: nn.Module, example: Tensor, dtype: str, calib: Tensor | None, quiet: bool
) -> Callable[[Tensor], Tensor]:
    from . import openvino as OV

    OV.require("nncf" if dtype == "int8" else "openvino")
    with tempfile.TemporaryDirectory(prefix="inceptionnet-fast-") as tmp:
        path = Path(tmp) / "model.onnx"
        _export_onnx(graph, reference, example, path, quiet)
        return OV.engine(path, dtype, int(example.shape[0]), calib)


def _check(fast: FastModel, got: Tensor, ref: Tensor) -> None:
    what = f"{fast.backend} backend ({str(fast.dtype).removeprefix('torch.')})"
    check_shape(got, ref, what, FastInferenceError)
    got, ref = got.float().cpu(), ref.float().cpu()
    fast.max_abs_diff, fast.tolerance = max_abs_diff(got, ref), tolerance(ref)
    fast.top1_agreement = top1_agreement(got, ref)
    if fast.dtype == torch.float32:
        check_close(got, ref, what, against="eager fp32", error=FastInferenceError)
    elif not bool(torch.isfinite(got).all()):
        raise FastInferenceError(f"{what}: non-finite outputs where eager fp32 has finite ones")


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch: int) -> Tensor:
    with torch.inference_mode(), flush_denormal():
        return torch.cat([fn(b).float().cpu() for b in x.split(max(1, batch))])


def _candidates(
    dtype: str, candidates: Sequence[str] | None, calibrated: bool, device: torch.device
) -> list[str]:
    """The (backend-dtype) names ``auto`` builds, e.g. ["eager", "openvino", "openvino-int8"]."""
    from ..runtime import bf16_supported
    from . import openvino as OV

    if candidates:
        names = []
        for c in candidates:
            backend, _, suffix = c.partition("-")
            cdt = parse_dtype(suffix) if suffix else ("float32" if dtype == "auto" else dtype)
            if backend not in BACKEND_DTYPES:
                raise ValueError(f"unknown candidate {c!r}; choose from {', '.join(BACKEND_DTYPES)}")
            names.append(backend + dtype_suffix(cdt))
    else:
        dtypes = [dtype] if dtype != "auto" else ["float32"]
        if dtype == "auto" and calibrated:
            dtypes += (["bfloat16"] if bf16_supported(device) else []) + ["int8"]
        names = [
            b + dtype_suffix(d)
            for d in dtypes
            for b in BACKEND_DTYPES
            if d in BACKEND_DTYPES[b] and b != "compile" and (b != "openvino" or OV.available())
        ]
    if device.type != "cpu":
        names = [n for n in names if n.partition("-")[0] not in CPU_ONLY]
    return names


def _split_name(name: str) -> tuple[str, str]:
    backend, _, suffix = name.partition("-")
    return backend, parse_dtype(suffix) if suffix else "float32"


def _check_args(backend: str, dt: str, example_input: Tensor, calibration: Any) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if example_input.dim() != 4:
        raise ValueError(f"example_input must be N x C x H x W, got shape {tuple(example_input.shape)}")
    if backend != "auto" and dt == "auto":
        raise ValueError("dtype='auto' chooses among backends: use backend='auto'")
    if backend != "auto" and dt not in BACKEND_DTYPES[backend]:
        runs = " and ".join(_SHORT[d] for d in BACKEND_DTYPES[backend])
        raise ValueError(f"the {backend} backend runs {runs} only, not {_SHORT[dt]}")
    if dt == "int8" and calibration is None:
        raise ValueError(
            "int8 needs calibration images: calibration= a tensor, a DataLoader or a data set name such as "
            "'fashion_mnist:train'"
        )


_SHORT = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8", "auto": "auto"}


def optimize_for_inference(
    model: nn.Module,
    example_input: Tensor,
    *,
    backend: str = "auto",
    dtype: torch.dtype | str = torch.float32,
    candidates: Sequence[str] | None = None,
    calibration: Tensor | Iterable[Any] | str | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    min_top1_agreement: float | None = None,
    auto_iters: int = 3,
    quiet: bool = True,
) -> FastModel:
    """A fast callable computing ``model(x)`` (logits) for inputs shaped like ``example_input``.

    ``backend``: "eager", "compile", "onnxruntime", "openvino" or "auto" (the fastest of ``candidates``
    that passes its checks, each timed ``auto_iters`` times on ``example_input`` after a warm-up).
    ``dtype``: ``torch.float32``, ``torch.bfloat16``, ``torch.qint8`` / ``"int8"``, or ``"auto"`` (with
    ``backend="auto"``: lower precision too when ``calibration`` is given). ``calibration``: images
    (a tensor, a DataLoader, or ``"NAME:SPLIT"`` of a built-in data set), at most ``calibration_size``
    of them used: int8 is calibrated on them and bf16 / int8 are checked on them (top-1 agreement with
    eager fp32). The result is checked against the eager fp32 model (see the module docstring);
    ``FastInferenceError`` otherwise. ``model`` itself is not modified.
    """
    dt = parse_dtype(dtype)
    _check_args(backend, dt, example_input, calibration)
    t0 = time.perf_counter()
    builder = _Builder(model, example_input, calibration, calibration_size, min_top1_agreement, quiet)
    builder.auto = backend == "auto"
    if not builder.auto:
        fast = builder.build(backend + dtype_suffix(dt))
    else:
        names = _candidates(dt, candidates, builder.calib is not None, example_input.device)
        fast = _fastest(builder, names, dt, example_input, auto_iters)
    fast.setup_s = time.perf_counter() - t0
    return fast


class _Builder:
    """Builds and checks one candidate ``"backend[-dtype]"`` at a time, sharing what they all need: the
    eager fp32 reference and its outputs, the optimized graph (and its bf16 copy), the calibration images."""

    def __init__(
        self,
        model: nn.Module,
        example: Tensor,
        calibration: Tensor | Iterable[Any] | str | None,
        calibration_size: int,
        min_top1_agreement: float | None,
        quiet: bool,
    ) -> None:
        self.model, self.example, self.quiet = model, example, quiet
        self.min_top1, self.auto = min_top1_agreement, False
        self.batch = int(example.shape[0])
        self.reference = copy.deepcopy(model).eval()
        with torch.inference_mode(), flush_denormal():
            ref = self.reference(example)
        if not isinstance(ref, Tensor):
            raise FastInferenceError(f"the model returned {type(ref).__name__}, not a logits Tensor")
        self.ref = ref
        self.calib = self.calib_ref = None
        if calibration is not None:
            self.calib = calibration_images(calibration, model, example, calibration_size)
            self.calib_ref = _batched(self.reference, self.calib.to(example.device), self.batch)
        self.opt, self.merged = optimize_module(model)
        self.graphs: dict[str, nn.Module] = {"float32": self.opt}

    def _fn(self, b: str, d: str) -> Callable[[Tensor], Tensor]:
        if b in ("eager", "compile"):
            if d not in self.graphs:
                self.graphs[d] = copy.deepcopy(self.opt).to(TORCH_DTYPES[d])
            mod: Callable[..., Any] = self.graphs[d]
            # freezing: parameters become graph constants, so Inductor folds them and prepacks the
            # conv weights for oneDNN once (it applies under inference_mode, as _torch_fn calls it)
            # (compiling does not modify the graph, so eager and compile candidates share its weights)
            return _torch_fn(
                torch.compile(mod, options={"freezing": True}) if b == "compile" else mod, TORCH_DTYPES[d]
            )
        calib = self.calib if d == "int8" else None
        if b == "onnxruntime":
            # ORT fuses conv+relu itself and runs the merged-1x1 graph slower (its Split copies):
            # export the BN-folded graph without the merge
            return _ort_fn(fold_bn(self.model).eval(), self.reference, self.example, calib, self.quiet)
        return _openvino_fn(self.opt, self.reference, self.example, d, self.calib, self.quiet)

    def build(self, name: str) -> FastModel:
        start = time.perf_counter()
        b, d = _split_name(name)
        if b in CPU_ONLY and self.example.device.type != "cpu":
            raise FastInferenceError(f"the {b} backend runs on the CPU; pass a CPU model and input")
        fast = FastModel(self._fn(b, d), b, TORCH_DTYPES[d], 0 if b == "onnxruntime" else self.merged)
        try:
            _check(fast, fast(self.example), self.ref)
            if d != "float32" and self.calib is not None and self.calib_ref is not None:
                got = _batched(fast, self.calib, self.batch)
                fast.top1_agreement = top1_agreement(got, self.calib_ref)
        except InceptionNetError:
            raise
        except Exception as e:
            raise FastInferenceError(f"{name} backend failed on the example input: {e}") from e
        self._check_agreement(fast, b, d)
        fast.setup_s = time.perf_counter() - start
        return fast

    def _check_agreement(self, fast: FastModel, b: str, d: str) -> None:
        need = self.min_top1
        low = d != "float32" and self.calib is not None
        if need is None and self.auto and low:
            need = AUTO_MIN_TOP1
        if need is not None and not fast.top1_agreement >= need:
            on = (
                f"{len(self.calib)} calibration images"
                if low and self.calib is not None
                else "the example input"
            )
            raise FastInferenceError(
                f"{b} backend ({_SHORT[d]}): top-1 agreement with eager fp32 {fast.top1_agreement:.4f} "
                f"< {need} on {on}"
            )


def _fastest(builder: _Builder, names: Sequence[str], dt: str, example: Tensor, auto_iters: int) -> FastModel:
    """``backend="auto"``: build each candidate, drop those failing their check (the reason kept in
    ``.timings``), time the rest on ``example`` and return the fastest."""
    best: FastModel | None = None  # slower candidates are dropped as soon as they lose
    best_t = float("inf")
    timings: dict[str, float | str] = {}
    errors = []
    for name in names:
        key = name.partition("-")[0] if dt != "auto" and _split_name(name)[1] == dt else name
        try:
            fast = builder.build(name)
        except (FastInferenceError, ImportError) as e:
            timings[key] = f"{'dropped' if 'agreement' in str(e) else 'error'}: {e}"
            errors.append(str(e))
            continue
        t = median_time(partial(fast, example), max(1, auto_iters))
        timings[key] = t
        if t < best_t:
            best, best_t = fast, t
        del fast
    if best is None:
        raise FastInferenceError("no backend passed its check: " + "; ".join(errors))
    best.timings = timings
    return best
