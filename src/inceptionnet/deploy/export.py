"""``inceptionnet export``: ONNX and TorchScript files, each verified against eager PyTorch before it is kept.

    inceptionnet export --checkpoint runs/digits/best.pt -o digits.onnx
    inceptionnet export googlenet --weights imagenet1k_v1 --format torchscript -o googlenet.pt
    inceptionnet export inception_v3 --input-size 299 299 --batch 8 --fold-bn -o v3.onnx
    inceptionnet predict --onnx digits.onnx digit.png

Every export is written to a temp file beside the output, checked (``onnx.checker`` for ONNX), loaded
back (ONNX Runtime on the CPU, or ``torch.jit.load``) and run on a random batch next to the eager
model; only when the outputs agree (max abs diff <= atol + rtol * max|eager|, atol 1e-4) is it renamed
over the output. An existing file is never replaced by one that did not verify, and a write that fails (a full disk:
torch's ``PytorchStreamWriter failed writing file``) is one ``OutputWriteError`` naming the file.

The exported graph takes ``input`` (N x C x H x W, normalized as the model expects) and returns
``logits`` (N x num_classes). What a deployment needs to prepare its inputs travels inside the file:
model name, input size, mean/std, resize policy and, when known, the class names (ONNX
``metadata_props``; TorchScript ``_extra_files["inceptionnet.json"]``). ``predict --onnx`` reads it back
and runs the file with ONNX Runtime without importing the model code.

ONNX uses PyTorch's TorchScript-based exporter by default (``--dynamo`` for the torch.export-based
one, which needs onnxscript): both export all eight models with the same outputs, but the
TorchScript-based one is 4-8x faster (export + verification on one thread: googlenet_small 32x32 2 s
vs 15 s, inception_resnet_v2 75x75 10 s vs 41 s), takes the dynamic batch axis without symbolic-shape
constraints, and writes opset 17 that older runtimes read. PyTorch deprecates it; ``--dynamo`` is the
way forward once it is removed.
"""

from __future__ import annotations

import copy
import io
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .. import data as D
from ..data.config import MAX_CLASSES, class_names, input_config_from_fields
from ..errors import CheckpointError, ExportError, UsageError, excerpt, first_line
from ..fileio import atomic_write, make_shareable, not_a_regular_file
from ..runtime import quiet_output
from .verify import MIN_INT8_AGREEMENT, check_close, check_int8_agreement  # noqa: F401 (export.* names kept)

FORMATS = ("onnx", "torchscript", "openvino", "pt2", "aoti", "executorch")
SUFFIX_FORMATS = {
    ".onnx": "onnx",
    ".xml": "openvino",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".jit": "torchscript",
    ".pt2": "pt2",  # --format aoti for an AOTInductor package (also .pt2)
    ".pte": "executorch",
}
TORCHSCRIPT_META = "inceptionnet.json"  # name of the metadata entry in a TorchScript file's extra files
OURS_KEY = "inceptionnet_version"  # the metadata key every exported file carries (build_metadata)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17  # TorchScript-based exporter; the dynamo exporter starts at 18
DYNAMO_MIN_OPSET = 18
VERIFY_BATCH = 3  # differs from the export example's batch of 2, so a dynamic axis is really tested
EXAMPLE_BATCH = 2  # batch 1 would let the dynamo exporter specialize the batch axis to 1
# metadata values that are plain strings in ONNX metadata_props; the others are JSON
_STRING_META = (
    "model_name",
    "interpolation",
    "dataset",
    "format",
    "exporter",
    "inceptionnet_version",
    "source",
)

INT8_FORMATS = ("onnx", "openvino", "executorch")
UINT8_FORMATS = ("onnx", "pt2", "aoti", "executorch", "openvino")

M = TypeVar("M", bound=nn.Module)


@dataclass
class ExportResult:
    """What ``export_model`` wrote and how well the file reproduces the eager model."""

    path: Path
    format: str
    exporter: str  # the torch.onnx exporter used, "torch.jit.script" or "torch.jit.trace"
    max_abs_diff: float
    tolerance: float
    verify_batch: int
    metadata: dict[str, Any]
    top1_agreement: float | None = None  # int8 files: on the calibration images, vs eager fp32


# --------------------------------------------------------------------------------------------------
# What gets exported: the logits path


class LogitsOnly(nn.Module):
    """``model(x)`` with nothing but the input tensor as argument, for tracing and ONNX export.

    Passing the model itself makes the TorchScript-based ONNX exporter feed ``return_aux``'s default
    in as a traced tensor (a TracerWarning per ``if``); this wrapper keeps it a Python ``False``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        assert isinstance(out, Tensor)
        return out


def _logits_forward(self: Any, x: Tensor) -> Tensor:
    feats, _ = self._features(x, False)
    return self.forward_head(feats)


_SCRIPTABLE: dict[type, type] = {}


def _scriptable_class(cls: type) -> type:
    """A subclass of an ``InceptionBase`` model class that ``torch.jit.script`` compiles.

    The models themselves do not script: ``forward(x, return_aux)`` returns ``Tensor | ModelOutput``
    and ``ModelOutput.aux`` is a variable-length tuple, which TorchScript has no type for; and
    ``from __future__ import annotations`` leaves InceptionBase's class annotations as strings, which
    torch.jit cannot resolve ("Unknown type annotation: 'int'"). The subclass has a logits-only
    ``forward`` (the same computation as ``forward(x)`` minus the eager input check), resolved
    annotations of the scalar attributes, and the config property marked unused.
    """
    if cls not in _SCRIPTABLE:  # one subclass per model class: TorchScript caches compiled types by class
        hints = {k: v for k, v in typing.get_type_hints(cls).items() if v in (int, float, bool)}
        _SCRIPTABLE[cls] = type(
            cls.__name__,
            (cls,),
            {
                "__annotations__": hints,
                "__jit_unused_properties__": ["pretrained_cfg"],
                "forward": _logits_forward,
                "__module__": __name__,
            },
        )
    return _SCRIPTABLE[cls]


def to_torchscript(model: nn.Module, example: Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """``torch.jit.script`` of the model's logits path where it compiles, else ``torch.jit.trace``."""
    from ..models.layers import InceptionBase

    if isinstance(model, InceptionBase):
        try:
            scriptable = copy.deepcopy(model).eval()
            scriptable.__class__ = _scriptable_class(type(model))
            return torch.jit.script(scriptable), "torch.jit.script"
        except Exception:  # anything TorchScript cannot compile: tracing needs no source support
            pass
    traced = torch.jit.trace(LogitsOnly(model).eval(), (example,), check_trace=False)
    return traced, "torch.jit.trace"


# --------------------------------------------------------------------------------------------------
# Metadata


def build_metadata(
    model_name: str,
    icfg: D.InputConfig,
    input_size: tuple[int, int],
    num_classes: int,
    classes: Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What a deployment needs to prepare inputs and read outputs (stored in the exported file)."""
    from .. import __version__

    meta: dict[str, Any] = {
        "model_name": model_name,
        "input_size": [icfg.in_chans, int(input_size[0]), int(input_size[1])],
        "mean": [float(v) for v in icfg.mean],
        "std": [float(v) for v in icfg.std],
        "interpolation": icfg.interpolation,
        "crop_pct": float(icfg.crop_pct),
        "num_classes": int(num_classes),
    }
    if icfg.dataset:
        meta["dataset"] = icfg.dataset
    if classes:
        meta["classes"] = [str(c) for c in classes]
    meta.update({k: v for k, v in extra.items() if v is not None})
    meta["inceptionnet_version"] = __version__
    return meta


def encode_onnx_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` are strings: names and words as they are, numbers and lists as JSON."""
    return {k: v if k in _STRING_META and isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def decode_onnx_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in props.items():
        if k in _STRING_META:
            out[k] = v
            continue
        try:
            out[k] = json.loads(v)
        except (ValueError, RecursionError):  # RecursionError: 100,000 nested brackets
            out[k] = v  # someone else's key: keep the text
    return out


def input_config_from_metadata(meta: Mapping[str, Any], source: str) -> D.InputConfig:
    """The preprocessing recorded in an exported file (the same ``InputConfig`` the PyTorch path uses),
    every field checked by ``data.config.input_config_from_fields``: a file's metadata is not trusted."""
    missing = [k for k in ("input_size", "mean", "std") if k not in meta]
    if missing:
        raise CheckpointError(
            f"{source} has no inceptionnet metadata ({', '.join(missing)} missing), so its preprocessing "
            "is unknown; export it with 'inceptionnet export'"
        )
    size = meta["input_size"]
    if not isinstance(size, list) or len(size) != 3 or not all(type(v) is int and v > 0 for v in size):
        raise CheckpointError(
            f"{source}: metadata input_size is {excerpt(size)}, not [channels, height, width] (3 positive "
            "integers); export the model again"
        )
    c, h, w = size
    if h != w:
        raise CheckpointError(
            f"{source} takes {h}x{w} inputs; prediction resizes and center-crops to a square, so "
            "export it with --input-size S S"
        )
    return input_config_from_fields(
        {**meta, "input_size": h, "in_chans": c}, source, error=CheckpointError, prefix="metadata ",
        fix="export the model again",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Export + verification


def ort_session(path: str | Path, device: str = "cpu", *, config: Mapping[str, str] | None = None) -> Any:
    """An ONNX Runtime session on ``path`` (CPU provider unless ``device="cuda"``), quiet and polite on
    shared machines: threads as torch uses, no spinning. ``config``: extra session config entries
    (e.g. ``{"session.set_denormal_as_zero": "1"}``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: ORT warns about unused initializers etc.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError(
                "this onnxruntime has no CUDA provider; use --device cpu or install onnxruntime-gpu"
            )
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        raise UsageError(f"--device must be cpu or cuda for ONNX Runtime, got {device!r}")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for damaged/foreign files
        msg = first_line(e)
        raise CheckpointError(f"cannot load ONNX file {path}: {msg}") from None


def ort_runner(sess: Any) -> Callable[[Tensor], Tensor]:
    """``run(x) -> logits`` (a float CPU tensor) on an ONNX Runtime session's first input and output."""
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x: Tensor) -> Tensor:
        x = x.detach().cpu().contiguous()
        arr = (x if x.dtype == torch.uint8 else x.float()).numpy()  # uint8: a file exported --uint8-input
        return torch.from_numpy(sess.run([out_name], {in_name: arr})[0])

    return run


@dataclass
class OnnxModel:
    """An exported ``.onnx`` file opened for inference: its session, metadata, preprocessing and classes."""

    session: Any
    meta: dict[str, Any]
    icfg: D.InputConfig
    classes: list[str]
    input_name: str
    output_name: str
    fixed_batch: int | None  # the batch a file exported with --batch N takes; None: dynamic


def open_onnx(path: str | Path, device: str = "cpu") -> OnnxModel:
    """``path`` in an ONNX Runtime session with the preprocessing and class names from its metadata
    (``predict --onnx``, ``serve --onnx``). One line for a file that is missing, of another kind,
    damaged, or whose classes cannot be told."""
    from ..fileio import input_file_kind

    path = Path(path)
    kind = input_file_kind(path, "ONNX file", "export it again")
    if kind in ("checkpoint", "torchscript", "safetensors", "pickle"):
        raise CheckpointError(
            f"{path} is a PyTorch file, not an ONNX file; run it with --checkpoint, or export it with "
            "'inceptionnet export --checkpoint FILE -o model.onnx'"
        )
    sess = ort_session(path, device)
    meta = decode_onnx_metadata(sess.get_modelmeta().custom_metadata_map)
    icfg = input_config_from_metadata(meta, str(path))
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    num_outputs = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else meta.get("num_classes")
    if num_outputs is not None and (type(num_outputs) is not int or not 0 < num_outputs <= MAX_CLASSES):
        raise CheckpointError(f"{path}: metadata num_classes is {excerpt(num_outputs)}; export it again")
    classes = class_names(meta.get("classes"), str(path), error=CheckpointError, fix="export it again")
    classes = classes or [str(i) for i in range(num_outputs or 0)]
    if not classes:
        raise CheckpointError(f"{path}: cannot tell the number of classes (no metadata, dynamic output)")
    if isinstance(num_outputs, int) and len(classes) != num_outputs:
        raise CheckpointError(f"{path}: {len(classes)} class names in the metadata but {num_outputs} outputs")
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    return OnnxModel(sess, meta, icfg, classes, inp.name, out.name, fixed)


def _export_onnx_proto(
    wrapper: nn.Module, example: Tensor, *, dynamic: bool, opset: int, dynamo: bool
) -> Any:
    """The ONNX ModelProto of ``wrapper`` traced on ``example``."""
    import onnx

    if dynamo:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
        program = torch.onnx.export(
            wrapper, (example,), None, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, verbose=False,
        )  # fmt: skip
        assert program is not None
        return program.model_proto
    buf = io.BytesIO()  # in memory: the metadata is added before anything touches the disk
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    torch.onnx.export(
        wrapper, (example,), buf,  # type: ignore[arg-type]  # the TorchScript-based exporter takes file objects
        dynamo=False, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes=dynamic_axes, do_constant_folding=True, verbose=False,
    )  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    fmt: str = "onnx",
    input_size: tuple[int, int],
    in_chans: int,
    batch: int | None = None,
    opset: int | None = None,
    dynamo: bool = False,
    metadata: Mapping[str, Any] | None = None,
    reference: nn.Module | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    quiet: bool = True,
    int8_calibration: Tensor | None = None,
    uint8_input: bool = False,
) -> ExportResult:
    """Export ``model``'s logits path to ``path`` (ONNX or TorchScript), verified before it is kept.

    ``batch=None`` makes the batch axis dynamic (checked with a batch other than the traced one);
    an int fixes it. ``reference`` (default: ``model``) is the eager model the file must reproduce,
    e.g. the unfolded model when ``model`` is ``fold_bn(reference)``. The file is written to a temp
    file beside ``path`` and renamed over it only after it verified; otherwise ``ExportError`` and
    ``path`` is left as it was. ``log`` gets one line per step.

    ``fmt="openvino"``: OpenVINO IR (``path`` .xml and its .bin; ``deploy.openvino``), converted from the
    verified ONNX graph. ``int8_calibration`` (model-ready images; ONNX and OpenVINO): the file is
    quantized to int8 (ONNX Runtime static QDQ; an IR is converted from that QDQ graph, which OpenVINO
    runs in int8) on those images and verified by top-1 agreement with ``reference`` on them
    (>= ``MIN_INT8_AGREEMENT``) instead of the max abs diff.

    ``fmt="pt2"`` / ``"aoti"``: a torch.export program / AOTInductor package (``deploy.pt2``).
    ``fmt="executorch"``: an ExecuTorch ``.pte`` with the XNNPACK delegate (``deploy.executorch``;
    ``int8_calibration``: PT2E int8 with its XNNPACKQuantizer, verified by top-1 agreement).
    ``uint8_input`` (every format but torchscript): the file takes uint8 N x H x W x C images and does
    the preprocessing ``metadata`` describes inside the graph (``pt2.Uint8Input``; OpenVINO IR: its
    PrePostProcessor, ``openvino.uint8_input``).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if int8_calibration is not None and fmt not in INT8_FORMATS:
        raise UsageError(f"int8 export is for the {', '.join(INT8_FORMATS)} formats")
    if uint8_input and (fmt not in UINT8_FORMATS or int8_calibration is not None):
        raise UsageError(f"uint8 input is for the {', '.join(UINT8_FORMATS)} formats, in fp32")
    if fmt == "executorch":
        from .executorch import require

        require()
    if batch is not None and batch < 1:
        raise UsageError(f"batch must be a positive integer or None (dynamic), got {batch}")
    path = Path(path)
    for p in output_files(path, fmt):  # before any work (atomic_write refuses it again at the end)
        node = not_a_regular_file(p)
        if node is not None:
            raise UsageError(f"cannot export to {p}: it is {node}, not a regular file")
    model = model.eval()
    reference = (reference if reference is not None else model).eval()
    gen = torch.Generator().manual_seed(seed)
    h, w = input_size
    example = torch.randn(batch or EXAMPLE_BATCH, in_chans, h, w, generator=gen)
    x = torch.randn(batch or VERIFY_BATCH, in_chans, h, w, generator=gen)
    if uint8_input:  # the same model and check on images as a decoder gives them
        from . import pt2

        metadata = {**(metadata or {}), **pt2.UINT8_META}
    if uint8_input and fmt != "openvino":  # an IR gets OpenVINO's PrePostProcessor instead (_write_openvino)
        model, reference = (
            pt2.Uint8Input.from_metadata(m, metadata or {}).eval() for m in (model, reference)
        )
        example, x = (torch.randint(0, 256, (t.shape[0], h, w, in_chans), generator=gen, dtype=torch.uint8)
                      for t in (example, x))  # fmt: skip
    with torch.no_grad():
        ref = reference(x)  # eager first: a bad input size or channel count fails here, clearly
    assert isinstance(ref, Tensor)
    meta = dict(metadata or {})
    meta.update(format=fmt, batch="dynamic" if batch is None else batch)
    job = _Job(
        model, reference, example, x, ref, meta, batch, opset, dynamo, atol, rtol, quiet,
        log or (lambda _: None), int8_calibration,
    )  # fmt: skip
    if fmt == "openvino":
        _write_openvino(job, path)
    elif fmt in ("pt2", "aoti"):
        from .pt2 import write_program

        atomic_write(path, partial(write_program, job, aoti=fmt == "aoti"))
    elif fmt == "executorch":
        from .executorch import write_pte

        atomic_write(path, partial(write_pte, job))
    else:
        atomic_write(path, partial(_write_onnx if fmt == "onnx" else _write_torchscript, job))
    job.say(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    r = job.result
    return ExportResult(
        path, fmt, r["exporter"], r["diff"], r["tol"], int(x.shape[0]), meta, r.get("agreement")
    )  # fmt: skip


@dataclass
class _Job:
    """What one export writes and checks the file against (``export_model``'s arguments, prepared)."""

    model: nn.Module
    reference: nn.Module
    example: Tensor  # traced
    x: Tensor  # the verification batch
    ref: Tensor  # reference(x)
    meta: dict[str, Any]
    batch: int | None
    opset: int | None
    dynamo: bool
    atol: float
    rtol: float
    quiet: bool
    say: Callable[[str], None]
    int8_calibration: Tensor | None
    result: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        _, c, h, w = self.x.shape
        batch = "dynamic batch" if self.batch is None else f"batch {self.batch}"
        return f"{batch}, input {c}x{h}x{w}"

    def checked(self, got: Tensor, what: str, runner: str) -> None:
        diff, tol = check_close(
            got, self.ref, what, atol=self.atol, rtol=self.rtol, note="; the file was not written"
        )
        self.say(
            f"{runner} vs eager PyTorch on a random batch of {self.x.shape[0]}: max abs diff {diff:.2e} (tolerance {tol:.1e})"
        )
        self.result.update(diff=diff, tol=tol)


def _write_onnx(j: _Job, tmp: str) -> None:
    """The verified ONNX file; with ``j.int8_calibration``, its static QDQ int8 form (ORT), checked."""
    import onnx

    version = j.opset or (DYNAMO_MIN_OPSET if j.dynamo else DEFAULT_OPSET)
    exporter = "dynamo torch.onnx exporter" if j.dynamo else "TorchScript-based torch.onnx exporter"
    try:
        with quiet_output(j.quiet), torch.no_grad():
            proto = _export_onnx_proto(
                LogitsOnly(j.model).eval(), j.example, dynamic=j.batch is None, opset=version, dynamo=j.dynamo
            )
    except Exception as e:
        raise ExportError(f"{exporter} failed: {first_line(e)}") from e
    j.meta.update(exporter=exporter, opset=version)
    onnx.helper.set_model_props(proto, encode_onnx_metadata(j.meta))
    onnx.save(proto, tmp)
    name = j.meta.get("model_name", type(j.model).__name__)
    j.say(f"exported {name} to ONNX with the {exporter}, opset {version}, {j.describe()}")
    try:
        onnx.checker.check_model(tmp, full_check=True)
    except Exception as e:
        raise ExportError(f"onnx.checker rejects the exported model: {first_line(e)}") from e
    j.say("checked with onnx.checker: valid")
    sess = ort_session(tmp)
    try:
        got = torch.from_numpy(sess.run([OUTPUT_NAME], {INPUT_NAME: j.x.numpy()})[0])
    except Exception as e:  # a RuntimeError here is the file's fault, not a failed write
        raise ExportError(f"ONNX Runtime cannot run the exported model: {first_line(e)}") from e
    j.checked(got, "ONNX Runtime", "ONNX Runtime (CPU)")
    j.result.update(exporter=exporter)
    if j.int8_calibration is not None:
        j.result["agreement"] = _quantize_onnx_in_place(tmp, j.meta, j.int8_calibration, j.reference, j.say)
    make_shareable(tmp)


def _write_torchscript(j: _Job, tmp: str) -> None:
    try:
        with quiet_output(j.quiet), torch.no_grad():
            scripted, exporter = to_torchscript(j.model, j.example)
    except Exception as e:
        raise ExportError(f"TorchScript conversion failed: {first_line(e)}") from e
    j.meta.update(exporter=exporter)
    with quiet_output(j.quiet):
        torch.jit.save(scripted, tmp, _extra_files={TORCHSCRIPT_META: json.dumps(j.meta)})
    name = j.meta.get("model_name", type(j.model).__name__)
    j.say(f"exported {name} to TorchScript with {exporter}, {j.describe()}")
    extra = {TORCHSCRIPT_META: ""}
    with quiet_output(j.quiet):
        loaded = torch.jit.load(tmp, map_location="cpu", _extra_files=extra)
    if json.loads(extra[TORCHSCRIPT_META]) != json.loads(json.dumps(j.meta)):
        raise ExportError("the TorchScript file's metadata did not survive reloading")
    j.say("reloaded with torch.jit.load: metadata intact")
    try:
        with torch.no_grad():
            got = loaded(j.x)
    except Exception as e:
        raise ExportError(f"the reloaded TorchScript file does not run: {first_line(e)}") from e
    j.checked(got, "reloaded TorchScript", "reloaded TorchScript")
    j.result.update(exporter=exporter)
    make_shareable(tmp)




def _quantize_onnx_in_place(
    tmp: str, meta: dict[str, Any], images: Tensor, reference: nn.Module, say: Callable[[str], None]
) -> float:
    """The verified fp32 file ``tmp`` -> its static QDQ int8 form, metadata kept, checked by agreement."""
    import onnx

    from .quant import quantize_onnx_qdq

    q = tmp + ".int8"
    try:
        quantize_onnx_qdq(tmp, q, images, INPUT_NAME)
        meta.update(
            precision="int8", quantization=f"ONNX Runtime static QDQ, per-channel, {len(images)} images"
        )
        proto = onnx.load(q)
        onnx.helper.set_model_props(proto, encode_onnx_metadata(meta))
        onnx.save(proto, tmp)
    finally:
        Path(q).unlink(missing_ok=True)
    say(
        f"quantized to int8 (ONNX Runtime static QDQ, per-channel weights) on {len(images)} calibration images"
    )
    agree = check_int8_agreement(ort_runner(ort_session(tmp)), images, reference, "int8 ONNX file")
    say(
        f"ONNX Runtime int8 vs eager PyTorch: top-1 agreement {agree:.4f} on {len(images)} calibration images"
    )
    return agree


def _write_openvino(j: _Job, path: Path) -> None:
    """IR converted from the verified ONNX file (int8: its verified QDQ form, which OpenVINO runs in
    int8; quantizing it again with NNCF only costs agreement), reloaded and checked, then written as
    ``path`` (.xml) and its .bin, each by an atomic rename."""
    import shutil
    import tempfile

    from . import openvino as OV

    images = j.int8_calibration
    OV.require("openvino")
    with tempfile.TemporaryDirectory(prefix="inceptionnet-ir-") as tmp:
        onnx_path = str(Path(tmp) / "model.onnx")
        _write_onnx(j, onnx_path)  # exported and verified with ONNX Runtime first (int8: QDQ, checked)
        model = OV.read_onnx(onnx_path)
        j.meta.update(format="openvino", openvino=OV.require().__version__)
        if j.meta.get("input_dtype") == "uint8":  # checked from here on uint8 images
            model = OV.uint8_input(model, j.meta)
            j.x, j.ref = _uint8_check(j)
        ir = Path(tmp) / "model.xml"
        OV.save_ir(model, ir, j.meta)
        loaded, got_meta = OV.load_ir(ir)
        if got_meta != json.loads(json.dumps(j.meta)):
            raise ExportError("the OpenVINO IR's metadata did not survive reloading")
        run = OV.Runner(OV.compile_model(loaded, "int8" if images is not None else "float32", 1))
        if images is not None:
            agree = check_int8_agreement(run, images, j.reference, "int8 OpenVINO IR")
            j.result["agreement"] = agree
            j.say(
                f"reloaded IR (OpenVINO) vs eager PyTorch: top-1 agreement {agree:.4f} on {len(images)} calibration images"
            )
        else:
            j.checked(run(j.x), "reloaded OpenVINO IR", "reloaded IR (OpenVINO)")
        xml_dst, bin_dst = output_files(path, "openvino")
        for src, dst in ((ir.with_suffix(".bin"), bin_dst), (ir, xml_dst)):  # .bin first
            atomic_write(dst, lambda t, src=src: shutil.copyfile(src, t))  # type: ignore[misc]


def _uint8_check(j: _Job) -> tuple[Tensor, Tensor]:
    """Random uint8 N x H x W x C images like ``j.x``, and what the eager reference makes of them."""
    from .pt2 import Uint8Input

    n, c, h, w = j.x.shape
    u8 = torch.randint(0, 256, (n, h, w, c), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        return u8, Uint8Input.from_metadata(j.reference, j.meta).eval()(u8)


# --------------------------------------------------------------------------------------------------
# The files an export writes, and how a later export recognises them as its own


def output_files(path: str | Path, fmt: str) -> list[Path]:
    """Every file exporting to ``path`` in ``fmt`` writes: the file itself, and for OpenVINO IR the
    ``.bin`` beside the ``.xml``. (ONNX is written in one file: ``onnx.save`` without external data,
    so no file beside it is touched; models over 2 GB cannot be exported.)"""
    p = Path(path)
    return [p, p.with_suffix(".bin")] if fmt == "openvino" else [p]


def written_by_export(path: str | Path, fmt: str) -> bool:
    """Is ``path`` (an existing regular file) one that ``export_model`` wrote in ``fmt``, recognised
    by the metadata it stores (never by its name)? An IR's ``.bin`` is ours when its ``.xml`` is."""
    from ..fileio import file_kind, zip_members

    p = Path(path)
    if fmt == "openvino":
        return _is_our_ir(p.with_suffix(".xml"))
    if fmt in ("pt2", "aoti"):
        from .pt2 import written_by_us

        return written_by_us(p)
    if fmt == "executorch":
        from .executorch import written_by_us as pte_written_by_us

        return pte_written_by_us(p)
    if fmt == "torchscript":
        return file_kind(p) == "torchscript" and any(
            n.endswith(f"/extra/{TORCHSCRIPT_META}") for n in zip_members(p)
        )
    if file_kind(p) != "onnx":
        return False
    import onnx

    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable ONNX file: not ours
        return False
    return any(e.key == OURS_KEY for e in proto.metadata_props)


MAX_IR_XML = 64 << 20  # an IR's .xml is the topology only (a few MB at most); larger is not ours


def _is_our_ir(xml: Path) -> bool:
    """An OpenVINO IR .xml with the project's metadata in its ``rt_info`` (``openvino.save_ir``: the
    ``inceptionnet`` entry, a JSON object with ``inceptionnet_version``)."""
    import html
    import re

    from .openvino import META_KEY

    try:
        if not xml.is_file() or xml.stat().st_size > MAX_IR_XML:
            return False
        text = xml.read_bytes()
    except OSError:
        return False
    if not (text.lstrip().startswith(b"<?xml") and b"<net " in text[:4096]):
        return False
    m = re.search(rb"<rt_info>.*<" + META_KEY.encode() + rb' value="([^"]*)"', text, re.DOTALL)
    try:
        meta = json.loads(html.unescape(m.group(1).decode("utf-8"))) if m else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and OURS_KEY in meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an exported ONNX or TorchScript file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"exported model {p} does not exist")
    if p.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(p), load_external_data=False)
        return decode_onnx_metadata({e.key: e.value for e in proto.metadata_props})
    if p.suffix == ".pt2":
        from .pt2 import read_metadata as read_pt2_metadata

        return read_pt2_metadata(p) or {}
    if p.suffix == ".pte":
        from .executorch import read_metadata as read_pte_metadata

        return read_pte_metadata(p) or {}
    extra = {TORCHSCRIPT_META: ""}
    with quiet_output():  # torch.jit.load's deprecation warning
        torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_META]) if extra[TORCHSCRIPT_META] else {}
