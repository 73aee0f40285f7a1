"""OpenVINO (the optional extra ``inceptionnet[openvino]``): models, compiling, running, IR files.

* ``read_onnx``: an ``openvino.Model`` from a verified ONNX file (the project's exporter writes it, so
  OpenVINO runs the graph that was checked against eager PyTorch).
* ``quantize``: NNCF post-training quantization (``nncf.quantize``: per-channel symmetric int8 weights,
  int8 activations, the ``PERFORMANCE`` preset NNCF uses for CPUs, fast bias correction) calibrated on
  real images.
* ``compile_model``: the CPU plugin with the settings OpenVINO's performance guide recommends:
  ``PERFORMANCE_HINT`` ``THROUGHPUT`` for batches (several streams, fed in parallel) and ``LATENCY``
  for batch 1; ``INFERENCE_PRECISION_HINT`` ``bf16`` for bf16 and ``f32`` for fp32 (int8 models leave
  it at the plugin's default for the layers that stay in floating point): ``deploy.dtypes.DTYPE_TABLE``.
* ``Runner``: ``runner(x) -> logits``; a batch larger than 1 is split over the compiled model's
  ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` requests run in parallel (``AsyncInferQueue``): that is how
  the throughput hint's streams are used at all (one synchronous request runs on one stream).
* ``uint8_input``: the model taking uint8 N x H x W x C images, the preprocessing done by OpenVINO's
  ``PrePostProcessor`` (to f32, / 255, channel order, mean / std, NHWC -> NCHW) and saved in the IR
  (``export --format openvino --uint8-input``).
* ``save_ir`` / ``load_ir``: OpenVINO IR (``.xml`` + ``.bin``, weights not compressed to fp16) with the
  project's metadata in the model's ``rt_info``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, FastInferenceError, UsageError, first_line
from .dtypes import DTYPE_TABLE

__all__ = [
    "INSTALL_HINT",
    "Runner",
    "available",
    "compile_model",
    "engine",
    "load_ir",
    "performance_hint",
    "quantize",
    "read_onnx",
    "save_ir",
    "uint8_input",
]

INSTALL_HINT = "install it with: pip install 'inceptionnet[openvino]' (openvino and nncf)"
META_KEY = "inceptionnet"


def require(what: str = "openvino") -> Any:
    """The imported module; ImportError naming the extra when it is not installed."""
    try:
        if what == "nncf":
            import nncf

            return nncf
        import openvino

        return openvino
    except ImportError as e:
        raise ImportError(f"the openvino backend needs {what}: {INSTALL_HINT} ({first_line(e)})") from None


def available() -> bool:
    try:
        require("openvino")
    except ImportError:
        return False
    return True


def core() -> Any:
    return require("openvino").Core()


def read_onnx(path: str | Path) -> Any:
    return core().read_model(str(path))


def quantize(model: Any, images: Tensor, batch: int = 1) -> Any:
    """NNCF int8 of an ``openvino.Model``, calibrated on ``images`` (N x C x H x W, model-ready)."""
    nncf = require("nncf")
    items = [b.numpy() for b in images.split(batch)]
    try:
        return nncf.quantize(
            model, nncf.Dataset(items), subset_size=len(items), preset=nncf.QuantizationPreset.PERFORMANCE
        )
    except Exception as e:
        raise FastInferenceError(f"NNCF int8 quantization failed: {first_line(e)}") from e


def performance_hint(batch: int) -> str:
    """OpenVINO's ``PERFORMANCE_HINT`` for a batch size: ``THROUGHPUT`` for batches, ``LATENCY`` for 1."""
    return "THROUGHPUT" if batch > 1 else "LATENCY"


def compile_model(model: Any, dtype: str, batch: int, threads: int | None = None) -> Any:
    """A CPU ``CompiledModel`` with ``performance_hint(batch)``."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint(batch)}
    hint = DTYPE_TABLE[dtype].openvino_hint
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    config["INFERENCE_NUM_THREADS"] = int(threads or torch.get_num_threads())
    return core().compile_model(model, "CPU", config)


def engine(onnx_path: str | Path, dtype: str, batch: int, calib: Tensor | None = None) -> Runner:
    """An ONNX file compiled for ``dtype`` ("float32", "bfloat16", or "int8": NNCF-quantized on
    ``calib``) at ``batch``, ready to run."""
    model = read_onnx(onnx_path)
    if DTYPE_TABLE[dtype].calibrated:
        if calib is None:
            raise UsageError("int8 needs calibration images")
        model = quantize(model, calib)
    return Runner(compile_model(model, dtype, batch))


class Runner:
    """``runner(x) -> logits`` (fp32 tensor) on a compiled model; see the module docstring."""

    def __init__(self, compiled: Any) -> None:
        ov = require("openvino")
        self.compiled = compiled
        self.requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._sync = compiled.create_infer_request()
        self._queue = ov.AsyncInferQueue(compiled, self.requests) if self.requests > 1 else None
        self._out: dict[int, np.ndarray] = {}
        if self._queue is not None:
            self._queue.set_callback(self._done)

    def _done(self, request: Any, index: int) -> None:
        self._out[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, x: Tensor) -> Tensor:
        x = x.detach().cpu()
        arr = np.ascontiguousarray((x if x.dtype == torch.uint8 else x.float()).numpy())  # uint8: uint8_input
        if self._queue is None or len(arr) < 2:
            return torch.from_numpy(self._sync.infer({0: arr})[0].copy())
        chunks = np.array_split(arr, min(self.requests, len(arr)))
        self._out.clear()
        for i, chunk in enumerate(chunks):
            self._queue.start_async({0: chunk}, userdata=i)
        self._queue.wait_all()
        return torch.from_numpy(np.concatenate([self._out[i] for i in range(len(chunks))]))


def uint8_input(model: Any, meta: Mapping[str, Any]) -> Any:
    """``model`` (N x C x H x W float, normalized) taking uint8 N x H x W x C images instead: what
    ``data.transforms.to_model_input`` does (and ``pt2.Uint8Input`` for the other formats), as
    OpenVINO ``PrePostProcessor`` steps ``meta`` (``export.build_metadata``'s) describes."""
    ov = require("openvino")
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NCHW"))  # the layout conversion is implied by the two layouts
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if float((meta.get("input_range") or (0.0, 1.0))[1]) <= 1.0:
        steps.scale(255.0)
    if meta.get("input_space") == "BGR":
        steps.reverse_channels()
    steps.mean([float(v) for v in meta["mean"]]).scale([float(v) for v in meta["std"]])
    return ppp.build()


def save_ir(model: Any, path: str | Path, metadata: Mapping[str, Any]) -> None:
    """``model`` as IR at ``path`` (.xml, with its .bin beside it), metadata in ``rt_info``."""
    ov = require("openvino")
    model.set_rt_info(json.dumps(dict(metadata)), [META_KEY])
    ov.save_model(model, str(path), compress_to_fp16=False)


def load_ir(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(``openvino.Model``, the inceptionnet metadata or {}) of an IR file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"OpenVINO IR {p} does not exist")
    if not p.with_suffix(".bin").is_file():
        raise FileNotFoundError(f"OpenVINO IR {p}: its weights file {p.with_suffix('.bin')} is missing")
    try:
        model = core().read_model(str(p))
    except Exception as e:
        raise CheckpointError(f"cannot read OpenVINO IR {p}: {first_line(e)}") from None
    meta: dict[str, Any] = {}
    if model.has_rt_info([META_KEY]):
        try:
            meta = json.loads(str(model.get_rt_info([META_KEY]).astype(str)))
        except (ValueError, AttributeError):
            meta = {}
    return model, meta
