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
  int8: the route of ``export --format openvino --int8``, ORT's static QDQ graph of the BN-folded file
  (as ``"onnxruntime"`` int8) run by OpenVINO in int8 (NNCF on the merged graph lost the top-1 on
  inception_v3 with random weights: issue 34; NNCF stays bench's ``tv-openvino-int8`` peer). CPU only.
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
  plus int8 ones. ``candidates=`` names them as ``"openvino-int8"``, ``"eager-bf16"``, ``"onnxruntime"``
  (``deploy.backends.Candidate.parse``).

Every backend is checked against the original model in eval mode, eager fp32, on the example input
when it is created: fp32 must agree to ``max abs diff <= atol + rtol * max|reference|`` (atol 1e-4,
rtol 1e-5, as ``export``); bf16 / int8 outputs must be finite and of the right shape. With calibration
images, ``.top1_agreement`` is the fraction of them whose top-1 class matches eager fp32 (else: of the
example batch). ``min_top1_agreement=`` makes it a check; under ``"auto"`` bf16 and int8 candidates are
held to ``AUTO_MIN_TOP1`` (99 %) unless ``min_top1_agreement`` says otherwise, and one that fails is
dropped, with the reason in ``.timings``. ``FastInferenceError`` when a check fails (``AgreementError``,
a subclass, when it is the top-1 agreement).

Every call checks its input first (``input_check``): what the eager model refuses
(``models.layers.check_input``: not a tensor, not floating point, not N x C x H x W, other channels, too
small; ``InputShapeError`` with the eager model's own message; any float dtype is cast by the engine)
and NaN / infinity (``NonFiniteError``: eager fp32 would return NaN logits, an int8 engine quantizes
them to finite codes and returns a plausible answer). A top-1 agreement of a bf16 / int8 path is
never claimed on fewer than ``deploy.verify.MIN_AGREEMENT_IMAGES`` (16) images, and calibration
images must be floats prepared as the model takes them, at least 16 of them
(``deploy.quant.calibration_images``).

The backends are the records of ``deploy.backends.REGISTRY`` (what each runs, where, from which graph,
its build function); the dtypes are ``deploy.dtypes.DTYPE_TABLE``.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import AgreementError, FastInferenceError, InceptionNetError, NonFiniteError, UsageError
from ..models.layers import check_input
from ..runtime import all_finite, flush_denormal
from .backends import REGISTRY, Backend, BuildJob, Candidate, SharedFiles
from .backends import export_graph_onnx as _export_onnx  # noqa: F401  (scripts/openvino_graph_ab.py)
from .dtypes import DTYPE_TABLE, DTYPES, FP32, short_name
from .fold import fold_bn, optimize_module
from .quant import DEFAULT_CALIBRATION_SIZE, calibration_images, parse_dtype, top1_agreement
from .verify import check_agreement_count, check_close, check_shape, max_abs_diff, tolerance

__all__ = [
    "AUTO_MIN_TOP1",
    "BACKENDS",
    "DTYPES",
    "AgreementError",
    "FastInferenceError",
    "FastModel",
    "input_check",
    "optimize_for_inference",
]

BACKENDS = ("auto", *REGISTRY)  # "auto" picks among the records of deploy.backends
AUTO_MIN_TOP1 = 0.99
CUT = 1.25  # auto: a first timed call this much slower than the best so far has lost

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
        self,
        fn: Callable[[Tensor], Tensor],
        backend: str,
        dtype: torch.dtype,
        merged_convs: int,
        check: Callable[[Tensor], None] | None = None,
    ) -> None:
        self._fn = fn
        self._check = check
        self.backend = backend
        self.dtype = dtype
        self.merged_convs = merged_convs
        self.max_abs_diff = float("nan")
        self.tolerance = float("nan")
        self.top1_agreement = float("nan")
        self.setup_s = 0.0
        self.timings: dict[str, float | str] = {}

    def __call__(self, x: Tensor) -> Tensor:
        if self._check is not None:  # the engines cast whatever they get: check before they do
            self._check(x)
        return self._fn(x)

    def __repr__(self) -> str:
        return (
            f"FastModel(backend={self.backend!r}, dtype={self.dtype}, max_abs_diff={self.max_abs_diff:.2e}, "
            f"top1_agreement={self.top1_agreement:.3f})"
        )


def input_check(model: nn.Module, example: Tensor) -> Callable[[Tensor], None]:
    """What the fast path refuses before an engine sees ``x``: what the eager model refuses
    (``models.layers.check_input``, with the model's own channels, minimum size and name when it is
    one of ours: a tensor, floating point, N x C x H x W), any float dtype being accepted (each
    engine casts to its own), and non-finite values (``NonFiniteError``), which eager would turn
    into NaN logits but an int8 engine quantizes to finite codes: a plausible, wrong answer."""
    make = getattr(model, "input_checker", None)
    if callable(make):
        base = make()
    else:  # any module: the channels of the example it is built for
        chans = int(example.shape[1]) if isinstance(example, Tensor) and example.dim() == 4 else 0
        base = partial(check_input, in_chans=chans, min_size=1, name=type(model).__name__)

    def check(x: Tensor) -> None:
        base(x)
        if not all_finite(x):  # per batch: one sum, not an element-wise copy (4.6 % of an int8 batch)
            raise NonFiniteError(
                f"the fast path got an input holding NaN or infinity "
                f"({int((~torch.isfinite(x)).sum())} values); an engine would compute a wrong answer on it"
            )

    return check


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
    outs = []
    with torch.inference_mode(), flush_denormal():
        for b in x.split(max(1, batch)):
            out = fn(b.contiguous(memory_format=torch.channels_last))
            if not isinstance(out, Tensor):
                raise FastInferenceError(f"the model returned {type(out).__name__}, not a logits Tensor")
            outs.append(out.float().cpu())
    return torch.cat(outs)


def _candidates(
    dtype: str, candidates: Sequence[str] | None, calibrated: bool, device: torch.device
) -> list[Candidate]:
    """The candidates ``auto`` builds, e.g. eager, openvino, openvino-int8."""
    from ..runtime import bf16_supported

    if candidates:
        found = [Candidate.parse(c, FP32 if dtype == "auto" else dtype) for c in candidates]
    else:
        dtypes = [dtype] if dtype != "auto" else [FP32]
        if dtype == "auto" and calibrated:  # lower precision: in DTYPE_TABLE's order, native ones only
            dtypes += [d.name for d in DTYPE_TABLE.values() if d.name != FP32
                       and (not d.needs_native or bf16_supported(device))]  # fmt: skip
        found = [
            Candidate(b.name, d)
            for d in dtypes
            for b in REGISTRY.values()
            if d in b.dtypes and not b.slow and b.available()
        ]
    if device.type != "cpu":
        found = [c for c in found if not c.record.cpu_only]
    return found


def _check_args(backend: str, dt: str, example_input: Tensor, calibration: Any) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if example_input.dim() != 4:
        raise UsageError(f"example_input must be N x C x H x W, got shape {tuple(example_input.shape)}")
    if backend != "auto" and dt == "auto":
        raise UsageError("dtype='auto' chooses among backends: use backend='auto'")
    if backend != "auto" and dt not in REGISTRY[backend].dtypes:
        raise UsageError(f"the {backend} backend runs {REGISTRY[backend].runs()} only, not {short_name(dt)}")
    if dt in DTYPE_TABLE and DTYPE_TABLE[dt].calibrated and calibration is None:
        raise UsageError(
            f"{short_name(dt)} needs calibration images: calibration= a tensor, a DataLoader or a data set "
            "name such as 'fashion_mnist:train'"
        )


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
    prefer_low_precision: bool = False,
) -> FastModel:
    """A fast callable computing ``model(x)`` (logits) for inputs shaped like ``example_input``.

    ``backend``: "eager", "compile", "onnxruntime", "openvino" (``BACKENDS``: the records of
    ``deploy.backends``) or "auto" (the fastest of ``candidates`` that passes its checks, each timed
    ``auto_iters`` times on ``example_input`` after a warm-up).
    ``dtype``: ``torch.float32``, ``torch.bfloat16``, ``torch.qint8`` / ``"int8"``, or ``"auto"`` (with
    ``backend="auto"``: lower precision too when ``calibration`` is given). ``calibration``: images
    (a tensor, a DataLoader, or ``"NAME:SPLIT"`` of a built-in data set), at most ``calibration_size``
    of them used: int8 is calibrated on them and bf16 / int8 are checked on them (top-1 agreement with
    eager fp32). The result is checked against the eager fp32 model (see the module docstring);
    ``FastInferenceError`` otherwise. ``model`` itself is not modified.
    ``prefer_low_precision`` (``dtype="auto"``): candidates are built from the fewest bits up (int8,
    bf16, fp32), and once one passes its checks, those of more bits are not built: on CPUs an int8
    path that agrees with fp32 outruns bf16 and fp32 (measured: openvino int8 2.6x eager bf16 on
    inception_v3, AMD Zen 4), and each build and check costs seconds. Bulk ``predict`` sets it. An ``example_input`` that is the first images of a ``calibration`` tensor shares their
    reference outputs.
    """
    dt = parse_dtype(dtype)
    _check_args(backend, dt, example_input, calibration)
    check = input_check(model, example_input)
    check(example_input)
    t0 = time.perf_counter()
    builder = _Builder(model, example_input, calibration, calibration_size, min_top1_agreement, quiet)
    builder.check = check
    builder.auto = backend == "auto"
    try:
        if not builder.auto:
            fast = builder.build(Candidate(backend, dt))
        else:
            found = _candidates(dt, candidates, builder.calib is not None, example_input.device)
            fast = _fastest(builder, found, dt, example_input, auto_iters, prefer_low_precision)
    finally:
        builder.files.close()
    fast.setup_s = time.perf_counter() - t0
    return fast


class _Builder:
    """Builds and checks one ``Candidate`` at a time, sharing what they all need: the eager fp32
    reference and its outputs, the rewritten graphs (and their bf16 copy), the calibration images."""

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
        self.check: Callable[[Tensor], None] | None = None
        self.batch = int(example.shape[0])
        # channels-last: the same fp32 arithmetic as the caller's eager model, about twice as fast on
        # CPUs (oneDNN's NHWC convolutions and pooling), and the reference runs on every calibration image
        self.reference = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.calib = self.calib_ref = None
        if calibration is not None:
            self.calib = calibration_images(calibration, model, example, calibration_size)
            self.calib_ref = _batched(self.reference, self.calib.to(example.device), self.batch)
        head = self.calib[: self.batch] if self.calib is not None else None
        if (
            self.calib_ref is not None
            and head is not None
            and head.shape == example.shape
            and bool(torch.equal(head.to(example.device), example))
        ):  # the example is the first calibration images: their outputs are computed already
            ref: Any = self.calib_ref[: self.batch].to(example.device)
        else:
            with torch.inference_mode(), flush_denormal():
                ref = self.reference(example.contiguous(memory_format=torch.channels_last))
        if not isinstance(ref, Tensor):
            raise FastInferenceError(f"the model returned {type(ref).__name__}, not a logits Tensor")
        self.ref = ref
        self.opt, self.merged = optimize_module(model)
        self.graphs: dict[str, nn.Module] = {FP32: self.opt}  # the merged graph, by weight dtype
        self.files = SharedFiles()  # ONNX and QDQ files made once for all candidates

    def _job(self, rec: Backend, dtype: str) -> BuildJob:
        """What ``rec.build`` gets: the graph it starts from (a bf16 copy shared by eager and compile)."""
        if rec.graph_for(dtype) == "folded":
            graph = fold_bn(self.model).eval()
        else:
            key = dtype if rec.weights_in_dtype else FP32
            if key not in self.graphs:
                self.graphs[key] = copy.deepcopy(self.opt).to(DTYPE_TABLE[key].torch)
            graph = self.graphs[key]
        calib = self.calib if DTYPE_TABLE[dtype].calibrated else None
        return BuildJob(
            graph, self.reference, self.example, dtype, calib, self.quiet, rec.graph_for(dtype), self.files
        )

    def build(self, cand: Candidate) -> FastModel:
        start = time.perf_counter()
        rec, d = cand.record, cand.dtype
        if rec.cpu_only and self.example.device.type != "cpu":
            raise FastInferenceError(f"the {rec.name} backend runs on the CPU; pass a CPU model and input")
        if d not in rec.dtypes:
            raise FastInferenceError(f"the {rec.name} backend runs {rec.runs()} only, not {short_name(d)}")
        missing = rec.missing()
        if missing:
            raise ImportError(missing)
        merged = self.merged if rec.graph_for(d) == "merged" else 0
        fast = FastModel(rec.build(self._job(rec, d)), rec.name, DTYPE_TABLE[d].torch, merged, self.check)
        try:
            _check(fast, fast(self.example), self.ref)
            if d != FP32 and self.calib is not None and self.calib_ref is not None:
                got = _batched(fast, self.calib, self.batch)
                fast.top1_agreement = top1_agreement(got, self.calib_ref)
        except InceptionNetError:
            raise
        except Exception as e:
            raise FastInferenceError(f"{cand} backend failed on the example input: {e}") from e
        self._check_agreement(fast, d)
        fast.setup_s = time.perf_counter() - start
        return fast

    def _check_agreement(self, fast: FastModel, d: str) -> None:
        need = self.min_top1
        low = d != FP32 and self.calib is not None
        if need is None and self.auto and low:
            need = AUTO_MIN_TOP1
        if need is None:
            return
        on = (
            f"{len(self.calib)} calibration images" if low and self.calib is not None else "the example input"
        )
        if d != FP32:  # fp32 is held to closeness (check_close); a low-precision claim needs enough images
            n = len(self.calib) if self.calib is not None else self.batch
            what = f"{fast.backend} backend ({short_name(d)})"
            check_agreement_count(
                n, what, "pass calibration= images or a larger example batch", AgreementError
            )
        if not fast.top1_agreement >= need:
            raise AgreementError(
                f"{fast.backend} backend ({short_name(d)}): top-1 agreement with eager fp32 "
                f"{fast.top1_agreement:.4f} < {need} on {on}"
            )


def _race(fn: Callable[[], Any], iters: int, lost: float) -> float:
    """Median seconds of ``iters`` calls of ``fn`` (already warmed up), or the first call's alone
    when it takes ``lost`` seconds or more."""
    times: list[float] = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if times[0] >= lost:
            break
    return statistics.median(times)


def _fastest(
    builder: _Builder, found: Sequence[Candidate], dt: str, example: Tensor, auto_iters: int,
    prefer_low: bool = False,
) -> FastModel:  # fmt: skip
    """``backend="auto"``: build each candidate, drop those failing their check (the reason kept in
    ``.timings``), time the rest on ``example`` and return the fastest. Lower precision is built first
    (usually the fastest), and a candidate whose first timed call is already ``CUT`` x the best time
    so far is not timed again: it has lost (its one time is kept). The build's check has run it once,
    which is its warm-up."""
    best: FastModel | None = None  # slower candidates are dropped as soon as they lose
    best_t = float("inf")
    timings: dict[str, float | str] = {}
    errors = []
    bits = {d.torch: d.bits for d in DTYPE_TABLE.values()}
    order = (lambda c: DTYPE_TABLE[c.dtype].bits) if prefer_low else (lambda c: c.dtype == FP32)
    for cand in sorted(found, key=order):  # stable: the registry's order within
        if prefer_low and best is not None and DTYPE_TABLE[cand.dtype].bits > bits[best.dtype]:
            timings[str(cand)] = "skipped: a lower precision passed (prefer_low_precision)"
            continue
        key = cand.backend if dt != "auto" and cand.dtype == dt else str(cand)
        try:
            fast = builder.build(cand)
        except (FastInferenceError, ImportError) as e:
            timings[key] = f"{'dropped' if isinstance(e, AgreementError) else 'error'}: {e}"
            errors.append(str(e))
            continue
        t = _race(partial(fast, example), max(1, auto_iters), CUT * best_t)
        timings[key] = t
        if t < best_t:
            best, best_t = fast, t
        del fast
    if best is None:
        raise FastInferenceError("no backend passed its check: " + "; ".join(errors))
    best.timings = timings  # in the order built
    return best
