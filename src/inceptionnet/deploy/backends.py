"""The deployment backends, one record each: ``REGISTRY[name] -> Backend``, and ``Candidate``.

A ``Backend`` says what ``optimize_for_inference`` and ``inceptionnet bench`` need to know: the dtypes
it runs (names of ``deploy.dtypes.DTYPE_TABLE``), whether it runs on the CPU only, the packages it
needs (and the pip extra installing them), which rewritten graph it starts from, its build function,
and its peer form for bench (the same engine run on torchvision's plain export, as its docs
recommend, with no graph work of ours). Adding a backend is adding one record to ``REGISTRY``: the
fast path's candidates, ``--backend`` choices, bench's rows and peer rows all follow from it.

A ``Candidate`` is one (backend, dtype) pair; ``str(c)`` / ``Candidate.parse`` use the spelling of
flags and printed output: ``"eager"`` (fp32), ``"eager-bf16"``, ``"onnxruntime-int8"``.
"""

from __future__ import annotations

import copy
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import FastInferenceError, InceptionNetError, UsageError, first_line
from ..runtime import flush_denormal, quiet_output
from .dtypes import DTYPE_TABLE, FP32, dtype_suffix, parse_dtype
from .verify import ATOL, RTOL

__all__ = [
    "REGISTRY",
    "Backend",
    "BuildJob",
    "Candidate",
    "SharedFiles",
    "all_candidates",
    "export_graph_onnx",
]

Runner = Callable[[Tensor], Tensor]


class SharedFiles:
    """Files the builds of one ``optimize_for_inference`` call share, made once each in one temporary
    folder: the verified ONNX export of a graph (ONNX Runtime and OpenVINO both start from the
    BN-folded one) and its int8 QDQ graph (onnxruntime-int8 and openvino-int8 run the same file), so
    that ``auto`` exports and calibrates once, not once per candidate."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="inceptionnet-fast-")
        self.made: dict[str, Path] = {}

    def get(self, key: str, make: Callable[[Path], None]) -> Path:
        """The file ``key``, made by ``make(path)`` the first time it is asked for."""
        if key not in self.made:
            path = Path(self._tmp.name) / f"{key}.onnx"
            make(path)
            self.made[key] = path
        return self.made[key]

    def close(self) -> None:
        self._tmp.cleanup()
        self.made.clear()


@dataclass(frozen=True)
class BuildJob:
    """What a build function gets. ``graph``: the model rewritten as the record's ``graph`` says
    (``graph_kind``: "merged" or "folded"), its weights in ``dtype`` when the record has
    ``weights_in_dtype`` (else fp32); ``reference``: the eager fp32 model; ``calib``: calibration
    images for a calibrated dtype (int8), else None; ``files``: files shared with the other builds of
    the same call (by default a folder of its own, removed with the job)."""

    graph: nn.Module
    reference: nn.Module
    example: Tensor
    dtype: str
    calib: Tensor | None
    quiet: bool
    graph_kind: str = "merged"
    files: SharedFiles = field(default_factory=SharedFiles)

    def onnx_file(self) -> Path:
        """The graph's verified fp32 ONNX file (dynamic batch)."""

        def make(path: Path) -> None:
            export_graph_onnx(self.graph, self.reference, self.example, path, self.quiet)

        return self.files.get(self.graph_kind, make)

    def qdq_file(self) -> Path:
        """The int8 QDQ graph (ONNX Runtime's static quantizer) of ``onnx_file``, calibrated on ``calib``."""
        from .quant import quantize_onnx_qdq

        assert self.calib is not None, "qdq_file: an int8 job carries calibration images"
        src, calib = self.onnx_file(), self.calib
        return self.files.get(f"{self.graph_kind}-qdq", lambda path: quantize_onnx_qdq(src, path, calib))


# (plain fp32 ONNX file, dtype, batch, calibration images, a temporary folder) -> (runner, note)
PeerFn = Callable[[Path, str, int, Tensor, Path], tuple[Runner, str]]


@dataclass(frozen=True)
class Backend:
    """One deployment backend; see the module docstring."""

    name: str
    dtypes: tuple[str, ...]  # canonical dtype names it runs, in DTYPE_TABLE's order
    build: Callable[[BuildJob], Runner]
    cpu_only: bool = False
    requires: tuple[str, ...] = ()  # modules it imports ...
    extra: str | None = None  # ... and the pip extra that installs them
    graph: str = "merged"  # "merged": fold.optimize_module (BN folded, 1x1 merged); "folded": BN only
    graphs: tuple[tuple[str, str], ...] = ()  # (dtype, graph) where a dtype starts from another graph
    weights_in_dtype: bool = False  # the graph's weights are cast to the dtype (PyTorch backends)
    slow: bool = False  # left out of default candidate lists and bench's default rows
    per_batch: bool = False  # bench builds it once per batch size (its engine settings depend on it)
    peer: PeerFn | None = None  # bench's "tv-<name>[-dtype]" rows
    describe: Callable[[int], str] | None = None  # what bench's row adds to its note, given the batch

    def graph_for(self, dtype: str) -> str:
        """The graph ``dtype`` starts from: ``graph`` unless ``graphs`` names another."""
        return dict(self.graphs).get(dtype, self.graph)

    def missing(self) -> str | None:
        """Why the backend cannot run here (a package is not installed), or None."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as e:
                hint = f": install it with: pip install 'inceptionnet[{self.extra}]'" if self.extra else ""
                return f"the {self.name} backend needs {module}{hint} ({first_line(e)})"
        return None

    def available(self) -> bool:
        return self.missing() is None

    def runs(self) -> str:
        """ "fp32 and bf16" for messages."""
        return " and ".join(DTYPE_TABLE[d].flag for d in self.dtypes)


@dataclass(frozen=True, order=True)
class Candidate:
    """One (backend, dtype) pair the fast path can build: ``Candidate("openvino", "int8")``."""

    backend: str
    dtype: str = FP32  # canonical: "float32", "bfloat16", "int8"

    @classmethod
    def parse(cls, text: str, default_dtype: str = FP32) -> Candidate:
        """``"onnxruntime-int8"`` -> ``Candidate("onnxruntime", "int8")``; ``"eager"`` gets ``default_dtype``."""
        backend, _, suffix = text.partition("-")
        if backend not in REGISTRY:
            raise UsageError(f"unknown candidate {text!r}; choose from {', '.join(REGISTRY)}")
        dtype = parse_dtype(suffix) if suffix else default_dtype
        if dtype not in DTYPE_TABLE:
            raise UsageError(f"candidate {text!r}: name a dtype (fp32, bf16, int8), not {suffix!r}")
        return cls(backend, dtype)

    def __str__(self) -> str:
        return self.backend + dtype_suffix(self.dtype)

    @property
    def record(self) -> Backend:
        return REGISTRY[self.backend]


def all_candidates() -> list[Candidate]:
    """Every (backend, dtype) pair of the registry, in its order."""
    return [Candidate(b.name, d) for b in REGISTRY.values() for d in b.dtypes]


# --------------------------------------------------------------------------------------------------
# Build functions


def _torch_runner(module: Callable[..., Any], dtype: torch.dtype) -> Runner:
    """``module`` holds its weights in ``dtype`` already; the input is cast to match."""

    def run(x: Tensor) -> Tensor:
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), flush_denormal():
            out = module(x)
        assert isinstance(out, Tensor)
        return out.float()

    return run


def _build_eager(job: BuildJob) -> Runner:
    return _torch_runner(job.graph, DTYPE_TABLE[job.dtype].torch)


def _build_compile(job: BuildJob) -> Runner:
    # freezing: parameters become graph constants, so Inductor folds them and prepacks the conv
    # weights for oneDNN once (it applies under inference_mode, as _torch_runner calls it); compiling
    # does not modify the graph, so eager and compile candidates share its weights
    return _torch_runner(torch.compile(job.graph, options={"freezing": True}), DTYPE_TABLE[job.dtype].torch)


def export_graph_onnx(
    graph: nn.Module, reference: nn.Module, example: Tensor, path: Path, quiet: bool
) -> None:
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


def _build_ort(job: BuildJob) -> Runner:
    from .export import ort_runner, ort_session

    path = job.onnx_file() if job.calib is None else job.qdq_file()
    return ort_runner(ort_session(path, config={"session.set_denormal_as_zero": "1"}))


def _build_openvino(job: BuildJob) -> Runner:
    """fp32 / bf16: the verified ONNX file compiled by OpenVINO. int8: the route of ``export --format
    openvino --int8``: ORT's static QDQ graph of that file (``quant.quantize_onnx_qdq``), which OpenVINO
    runs in int8 (NNCF on the merged graph lost the top-1 on inception_v3: issue 34)."""
    from . import openvino as OV

    OV.require("openvino")
    batch = int(job.example.shape[0])
    if job.calib is None:
        return OV.engine(job.onnx_file(), job.dtype, batch)
    _require_ort("the openvino backend's int8 (ONNX Runtime's QDQ graph)")
    return OV.Runner(OV.compile_model(OV.read_onnx(job.qdq_file()), job.dtype, batch))


def _build_aoti(job: BuildJob) -> Runner:
    """The AOTInductor package ``export --format aoti`` writes (dynamic batch), compiled from the
    graph in the job's dtype, packaged in a temporary folder and loaded back."""
    from .pt2 import export_program

    dtype = DTYPE_TABLE[job.dtype].torch
    # torch.export specializes a batch of 1 (0/1 specialization): trace at 2 for a dynamic batch
    example = job.example if len(job.example) > 1 else job.example.expand(2, *job.example.shape[1:])
    with tempfile.TemporaryDirectory(prefix="inceptionnet-fast-") as tmp, quiet_output(job.quiet):
        path = str(Path(tmp) / "model.pt2")
        with torch.no_grad():
            ep = export_program(job.graph, example.to(dtype).contiguous(), None)
        torch._inductor.aoti_compile_and_package(ep, package_path=path)
        compiled = torch._inductor.aoti_load_package(path)

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode(), flush_denormal():
            out = compiled(x.to(dtype).contiguous())
        return out.float()

    return run


def _build_executorch(job: BuildJob) -> Runner:
    """The ``.pte`` ``export --format executorch`` writes (XNNPACK; int8 by its PT2E quantizer on the
    job's calibration images), run in ExecuTorch's Python runtime."""
    from . import executorch as ET

    ET.require("the executorch backend")
    batch = int(job.example.shape[0])
    with tempfile.TemporaryDirectory(prefix="inceptionnet-fast-") as tmp, quiet_output(job.quiet):
        path = Path(tmp) / "model.pte"
        path.write_bytes(ET.lower(job.graph, job.example, batch, {}, job.calib))
        forward = ET.load_forward(path, job.quiet)
    return ET.method_runner(forward, batch)


def _require_ort(what: str) -> None:
    try:
        importlib.import_module("onnxruntime")
    except ImportError as e:
        raise ImportError(
            f"{what} needs onnxruntime: pip install 'inceptionnet[onnx]' ({first_line(e)})"
        ) from None


# --------------------------------------------------------------------------------------------------
# Peer forms (bench): the same engine on torchvision's plain export


def _ort_peer(path: Path, dtype: str, batch: int, calib: Tensor, tmp: Path) -> tuple[Runner, str]:
    """ONNX Runtime with all graph optimizations (its default), intra-op threads = the threads; int8 by
    its static QDQ quantizer (per-channel, U8S8)."""
    from .export import ort_runner, ort_session
    from .quant import quantize_onnx_qdq

    note = "ONNX Runtime on the plain export (fp32, NCHW)"
    if DTYPE_TABLE[dtype].calibrated:
        quantize_onnx_qdq(path, tmp / "int8.onnx", calib)
        path = tmp / "int8.onnx"
        note = f"ONNX Runtime, plain export, static QDQ int8 per-channel ({len(calib)} images)"
    return ort_runner(ort_session(path)), note


def _openvino_peer(path: Path, dtype: str, batch: int, calib: Tensor, tmp: Path) -> tuple[Runner, str]:
    """OpenVINO's throughput hint for a batch (its requests run in parallel) and latency hint for batch
    1, bf16 by INFERENCE_PRECISION_HINT, int8 by NNCF."""
    from . import openvino as OV

    runner = OV.engine(path, dtype, batch, calib)
    how = f"NNCF int8 ({len(calib)} images)" if DTYPE_TABLE[dtype].calibrated else dtype
    return (
        runner,
        f"OpenVINO on the plain export, {OV.performance_hint(batch)}, {runner.requests} request(s), {how}",
    )


def _openvino_describe(batch: int) -> str:
    from .openvino import performance_hint

    return f"OpenVINO {performance_hint(batch)}"


# --------------------------------------------------------------------------------------------------
# The registry

REGISTRY: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("eager", dtypes=("float32", "bfloat16"), build=_build_eager, weights_in_dtype=True),
        Backend(
            "compile", dtypes=("float32", "bfloat16"), build=_build_compile, weights_in_dtype=True, slow=True
        ),
        # ORT fuses conv+relu itself and runs the merged-1x1 graph slower (its Split copies): BN only
        Backend(
            "onnxruntime",
            dtypes=("float32", "int8"),
            build=_build_ort,
            cpu_only=True,
            requires=("onnx", "onnxruntime"),
            extra="onnx",
            graph="folded",
            peer=_ort_peer,
        ),
        Backend(
            "openvino",
            dtypes=("float32", "bfloat16", "int8"),
            build=_build_openvino,
            cpu_only=True,
            requires=("onnx", "openvino"),
            extra="openvino",
            graphs=(("int8", "folded"),),  # int8: ORT's QDQ graph of the BN-folded file, as onnxruntime-int8
            per_batch=True,
            peer=_openvino_peer,
            describe=_openvino_describe,
        ),
        # the PyTorch 2 deployment files (issue 31): slow to build (AOTInductor compiles C++), so only
        # on request; ExecuTorch's program has a fixed batch here (its XNNPACK lowering narrows a
        # dynamic one), hence built per batch
        Backend(
            "aoti",
            dtypes=("float32", "bfloat16"),
            build=_build_aoti,
            cpu_only=True,
            weights_in_dtype=True,
            slow=True,
        ),
        Backend(
            "executorch",
            dtypes=("float32", "int8"),
            build=_build_executorch,
            cpu_only=True,
            requires=("executorch",),
            extra="executorch",
            graph="folded",
            slow=True,
            per_batch=True,
        ),
    )
}
