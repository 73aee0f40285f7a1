"""The one way a model is opened for inference: a ``ModelSource`` says where the model comes from,
``open_for_inference(source, ...) -> Predictor`` opens it (every command that runs a model does).

    source = ModelSource.checkpoint("runs/x/best.pt")               # a training checkpoint
    source = ModelSource.model("googlenet_small", "fashion_mnist")  # a name + weight entry or file
    source = ModelSource.exported("model.onnx")                     # an exported file (ONNX)
    p = open_for_inference(source, "cpu", backend="auto")           # p(batch) -> logits
    p.input_config, p.classes, p.model_name, p.runs_on, p.module

A source of each kind:

- ``checkpoint``: a training checkpoint of this project (``.pt`` or ``.safetensors`` with its
  metadata): the model, its data config and classes are in the file (``model_name`` set: the file
  must hold that model).
- ``model``: a model name with a weight entry or a weights file (a training checkpoint given as the
  file is built as its metadata says, checked against the name), or with no weights (random init,
  ``num_classes`` / ``in_chans`` / ``model_kwargs``: export and bench).
- ``exported``: a file ``deploy.export`` wrote; ``EXPORTED`` holds one ``ExportedFormat`` record per
  format (its name in messages, its suffixes, its opener): ONNX, PT2 (``.pt2``) and ExecuTorch
  (``.pte``); OpenVINO IR would be one more record.

Inference is stricter than ``create_model(weights=...)`` (which a fine-tuner uses): a classifier
that does not fit the class list is an error (not a random new head), damaged metadata
(``model_name``, ``model_kwargs``, ``classes``, ``data_cfg``; read once by
``models._builder.read_checkpoint_meta``) is one ``CheckpointError`` naming the file, and weights
with NaN/inf values are a ``NonFiniteError`` unless ``allow_nan``.

``deploy`` is imported only when a backend or an exported file is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from . import data as D
from .errors import CheckpointError, NonFiniteError, UsageError, excerpt, first_line

if TYPE_CHECKING:
    from .models import InceptionBase
    from .models._builder import LoadedWeights

__all__ = [
    "CLASSIFIER_KEYS",
    "EXPORTED",
    "EXPORTED_FORMATS",
    "ExportedFormat",
    "ModelSource",
    "Predictor",
    "accelerate",
    "check_fast_flags",
    "check_finite_weights",
    "load_for_inference",
    "open_for_inference",
    "open_model",
]


# classif/logits before last_linear: in facenet's Inception-ResNet-v1, last_linear is the 512-d embedding
CLASSIFIER_KEYS = ("fc.weight", "classif.weight", "logits.weight", "classifier.weight", "last_linear.weight")

SourceKind = Literal["checkpoint", "model", "exported"]
UNTRAINED = "untrained (random init)"


# --------------------------------------------------------------------------------------------------
# Where a model comes from


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from (see the module docstring). Build one with ``checkpoint``, ``model``,
    ``exported``, or from the shared flags with ``from_flags`` / ``from_args``."""

    kind: SourceKind
    path: str | None = None  # the checkpoint / exported file
    model_name: str | None = None  # kind model: the model; kind checkpoint: the model it must hold
    weights: str | None = None  # kind model: a weight entry or file; None: random init
    model_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    num_classes: int | None = None
    in_chans: int | None = None
    format: str | None = None  # kind exported: "onnx"

    @classmethod
    def checkpoint(cls, path: str | Path, model_name: str | None = None) -> ModelSource:
        return cls("checkpoint", path=str(path), model_name=model_name)

    @classmethod
    def model(
        cls,
        name: str,
        weights: str | Path | None = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        in_chans: int | None = None,
    ) -> ModelSource:
        return cls(
            "model", model_name=name, weights=None if weights is None else str(weights),
            model_kwargs=dict(model_kwargs or {}), num_classes=num_classes, in_chans=in_chans,
        )  # fmt: skip

    @classmethod
    def exported(cls, path: str | Path, format: str | None = None) -> ModelSource:
        """An exported file; ``format`` defaults to the one its suffix names (else ONNX)."""
        fmt = format or EXPORTED_FORMATS.get(Path(path).suffix.lower(), "onnx")
        if fmt not in EXPORTED:
            raise UsageError(f"cannot run exported {fmt} files; formats: {', '.join(EXPORTED)}")
        return cls("exported", path=str(path), format=fmt)

    @classmethod
    def from_flags(
        cls,
        checkpoint: str | None = None,
        model: str | None = None,
        weights: str | None = None,
        exported: str | None = None,
        *,
        exported_flag: str = "--onnx",
        exported_verb: str = "runs",
        untrained_ok: bool = False,
    ) -> ModelSource:
        """``--checkpoint FILE [--model NAME]`` | ``--model NAME --weights ENTRY|FILE`` | ``--onnx FILE``:
        conflicting or missing flags are one ``UsageError`` line naming the flags."""
        for flag, value in (("--checkpoint", checkpoint), ("--model", model), ("--weights", weights),
                            (exported_flag, exported)):  # fmt: skip
            if value is not None and not str(value).strip():
                raise UsageError(f"{flag} is empty; give {'a model name' if flag == '--model' else 'a file'}")
        if exported:
            for flag, value in (("--checkpoint", checkpoint), ("--model", model), ("--weights", weights)):
                if value:
                    raise UsageError(
                        f"{exported_flag} {exported_verb} the exported file on its own; drop {flag}"
                    )
            return cls.exported(exported)
        if checkpoint and weights:
            raise UsageError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE, not both")
        if checkpoint:
            return cls.checkpoint(checkpoint, model)
        if model:
            if not weights and not untrained_ok:
                raise UsageError("--model needs --weights (an entry name or a file), or use --checkpoint")
            return cls.model(model, weights)
        raise UsageError("give --checkpoint FILE, or --model NAME --weights ENTRY|FILE")

    @classmethod
    def from_args(cls, args: Any, **kwargs: Any) -> ModelSource:
        """``from_flags`` on a parsed Namespace (flags a command lacks count as not given)."""
        return cls.from_flags(
            getattr(args, "checkpoint", None), getattr(args, "model", None), getattr(args, "weights", None),
            getattr(args, "onnx", None), **kwargs,
        )  # fmt: skip

    @property
    def file(self) -> Path | None:
        """The file the model is read from, when it is one (a weight entry is not)."""
        from .models import get_weight_entry

        if self.kind != "model":
            return Path(self.path or "")
        if self.weights is None or (self.model_name and get_weight_entry(self.model_name, self.weights)):
            return None
        return Path(self.weights)

    def describe(self, short: bool = False) -> str:
        """How messages name it: ``checkpoint runs/x/best.pt``, ``weights fashion_mnist``, ``ONNX file
        m.onnx``, ``untrained (random init)`` (``short``: the file's name only)."""
        path = Path(self.path or "")
        shown = path.name if short else str(path)
        if self.kind == "checkpoint":
            return f"checkpoint {shown}"
        if self.kind == "exported":
            return f"{EXPORTED[self.format or 'onnx'].name} file {shown}"
        return UNTRAINED if self.weights is None else f"weights {self.weights}"

    def id(self) -> str:
        """What a response names the weights by: a weight entry by name (and its sha256 prefix), a
        file by name and the first 12 hex digits of its sha256."""
        from .fileio import sha256_of
        from .models import get_weight_entry

        if self.kind == "model" and self.model_name and self.weights:
            entry = get_weight_entry(self.model_name, self.weights)
            if entry is not None:
                return f"{self.weights}" + (f" sha256:{entry.sha256[:12]}" if entry.sha256 else "")
        path = self.file
        if path is None:
            return UNTRAINED
        return f"{path.name} sha256:{sha256_of(path)[:12]}"


# --------------------------------------------------------------------------------------------------
# What it opens into


@dataclass
class Predictor:
    """An opened model: ``predictor(batch) -> logits`` (N x C x H x W float, on ``device``), with how to
    prepare its inputs, its class names, what it runs on (``backend``, ``dtype``, ``device``) and the
    eager ``module`` (None for an exported file). ``fast``: the ``optimize_for_inference`` result
    when a backend was asked for; ``meta``: an exported file's metadata; ``fixed_batch``: the batch an
    exported file takes (``run`` pads and splits to it)."""

    run: Callable[[Tensor], Tensor]
    input_config: D.InputConfig
    classes: list[str]
    model_name: str
    source: ModelSource
    backend: str = "eager"
    dtype: str = "fp32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    module: nn.Module | None = None
    fast: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    fixed_batch: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        return self.run(x.to(self.device))

    @property
    def runs_on(self) -> str:
        return f"{self.backend} {self.dtype} on {self.device}"

    def describe(self) -> str:
        return f"{self.model_name} ({self.source.describe()}; {self.runs_on})"


def open_model(
    source: ModelSource,
    device: str | torch.device = "cpu",
    *,
    allow_nan: bool = False,
    nan_flag: str | None = "--allow-nan",
) -> tuple[InceptionBase, D.InputConfig, list[str], str]:
    """(eager model in eval mode on ``device``, how to prepare its inputs, class names, model name).
    NaN/inf weights raise ``NonFiniteError`` unless ``allow_nan`` (``nan_flag``: the flag that allows
    them, named in the message)."""
    if source.kind == "exported":
        raise UsageError(f"{source.describe()} is an exported model: it has no PyTorch module to open")
    from .models._builder import load_weights

    if source.kind == "checkpoint":
        loaded = load_weights(str(source.path))
        name = _checkpoint_model_name(loaded, source.model_name)
        model, icfg, classes = _from_loaded(loaded, name)
    else:
        name = str(source.model_name)
        model, icfg, classes = _from_model_source(source)
    if not allow_nan and (source.kind == "checkpoint" or source.weights is not None):
        check_finite_weights(model, source.describe(), nan_flag)
    if not classes:
        classes = [str(i) for i in range(model.num_classes)]
    return model.to(device).eval(), icfg, classes, name


def open_for_inference(
    source: ModelSource,
    device: str | torch.device = "cpu",
    *,
    backend: str | None = None,
    dtype: str = "fp32",
    calibration: str | None = None,
    batch: int = 1,
    dataset: str | None = None,
    allow_nan: bool = False,
    nan_flag: str | None = "--allow-nan",
) -> Predictor:
    """``source`` opened on ``device``: the eager model (``backend=None``, fp32), or the fast path
    (``deploy.fast.optimize_for_inference``: a ``deploy.backends.REGISTRY`` name or auto; ``dtype``
    fp32, bf16, int8 or auto, calibrated on ``calibration`` NAME:SPLIT, by default the model's data
    set (``dataset``) when it is built in), checked on a batch of ``batch``; an exported file in its
    runtime. Every error is one line."""
    dev = torch.device(device)
    if source.kind == "exported":
        return _open_exported(source, dev, backend, dtype)
    check_fast_flags(backend, dtype)
    model, icfg, classes, name = open_model(source, dev, allow_nan=allow_nan, nan_flag=nan_flag)
    p = Predictor(model, icfg, classes, name, source, device=dev, module=model)
    return p if backend is None else accelerate(p, backend, dtype, calibration, batch=batch, dataset=dataset)


def accelerate(
    p: Predictor,
    backend: str,
    dtype: str = "fp32",
    calibration: str | None = None,
    *,
    batch: int = 1,
    dataset: str | None = None,
    prefer_low_precision: bool = False,
    auto_iters: int = 3,
) -> Predictor:
    """``p`` (an eager predictor) on the fast path (see ``open_for_inference``). The example batch
    is the first calibration images when they are given as a tensor (their outputs are computed once),
    else random; ``prefer_low_precision``, ``auto_iters``: see ``optimize_for_inference``."""
    from .deploy.dtypes import parse_dtype, short_name
    from .deploy.fast import optimize_for_inference

    check_fast_flags(backend, dtype)
    assert p.module is not None, "accelerate takes an eager predictor"
    dt = parse_dtype(dtype or "fp32")
    dataset = dataset or p.input_config.dataset
    if calibration is None and dt in ("int8", "auto") and dataset in D.DATASETS and dataset != "imagefolder":
        calibration = f"{dataset}:train"
    if dt == "int8" and calibration is None:
        raise UsageError("--dtype int8 needs --calibration NAME:SPLIT (the model's data set is not built in)")
    icfg = p.input_config
    example = torch.randn(
        batch, icfg.in_chans, icfg.input_size, icfg.input_size, generator=torch.Generator().manual_seed(0)
    )
    if (
        isinstance(calibration, Tensor)
        and calibration.shape[1:] == example.shape[1:]
        and len(calibration) >= batch
    ):
        example = calibration[:batch].clone()
    try:
        fast = optimize_for_inference(
            p.module, example.to(p.device), backend=backend, dtype=dt, calibration=calibration,
            prefer_low_precision=prefer_low_precision, auto_iters=auto_iters,
        )  # fmt: skip
    except ImportError as e:  # the openvino extra is not installed: one line naming the flag
        raise UsageError(f"--backend {backend}: {e}") from None
    return replace(p, run=fast, backend=fast.backend, dtype=short_name(parse_dtype(fast.dtype)), fast=fast)


def check_fast_flags(backend: str | None, dtype: str | None) -> None:
    """--backend / --dtype before any work: one line naming the flag."""
    from .deploy.quant import parse_dtype

    if backend is None:
        if parse_dtype(dtype or "fp32") != "float32":
            raise UsageError(f"--dtype {dtype} needs --backend (e.g. --backend auto)")
        return
    from .deploy.fast import BACKENDS

    if backend not in BACKENDS:
        raise UsageError(f"--backend {excerpt(backend)}: choose one of {', '.join(BACKENDS)}")


def load_for_inference(
    checkpoint: str | None,
    model_name: str | None,
    weights: str | None,
    device: str | torch.device = "cpu",
    *,
    allow_nan: bool = False,
    nan_flag: str | None = "--allow-nan",
) -> tuple[InceptionBase, str, D.InputConfig, list[str]]:
    """(model in eval mode, model name, how to prepare its inputs, class names) from ``--checkpoint
    FILE`` or ``--model NAME --weights ENTRY|FILE``: ``open_model(ModelSource.from_flags(...))``."""
    source = ModelSource.from_flags(checkpoint, model_name, weights)
    model, icfg, classes, name = open_model(source, device, allow_nan=allow_nan, nan_flag=nan_flag)
    return model, name, icfg, classes


def check_finite_weights(model: nn.Module, source: str, flag: str | None = "--allow-nan") -> None:
    """``NonFiniteError`` naming ``source`` when a parameter or buffer holds NaN/inf (a diverged run
    saved them; every answer would be NaN or garbage)."""
    bad: list[tuple[str, int]] = []
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.device.type != "meta" and not bool(torch.isfinite(v).all()):
            bad.append((k, int((~torch.isfinite(v)).sum())))
    if bad:
        n = sum(c for _, c in bad)
        names = ", ".join(k for k, _ in bad[:3])
        anyway = f", or pass {flag} to run it anyway" if flag else ""
        raise NonFiniteError(
            f"{source} has {n} non-finite (NaN/inf) weights in {len(bad)} tensors (first: {names}); the "
            f"run that saved them diverged: use an earlier checkpoint{anyway}"
        )


# --------------------------------------------------------------------------------------------------
# Building the eager model


def _checkpoint_model_name(loaded: LoadedWeights, expected: str | None) -> str:
    """The model a training checkpoint holds (and must hold, when ``expected``)."""
    from .models import get_model_builder

    path, name = loaded.path, loaded.meta.model_name
    if name is None:
        raise CheckpointError(
            f"{path} does not say which model it holds (no model_name); use --model NAME --weights {path}"
        )
    try:
        get_model_builder(name)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} holds a model this version does not have: {e}") from None
    if expected and expected != name:
        raise CheckpointError(f"{path} is a {name} checkpoint, not {expected}")
    return name


def _from_model_source(source: ModelSource) -> tuple[InceptionBase, D.InputConfig, list[str]]:
    """Kind model: random init, a weight entry, or a weights file (read once; a training checkpoint
    given as the file is built as its metadata says)."""
    from .models import create_model, get_model_builder, get_weight_entry
    from .models._builder import load_weights

    name, weights = str(source.model_name), source.weights
    get_model_builder(name)  # an unknown name is the error to report, not the file
    if weights is None:
        model = _untrained(source)
    elif get_weight_entry(name, weights) is not None:
        model = create_model(name, weights=weights, num_classes=source.num_classes, new_head_ok=False)
    else:
        return _from_loaded(load_weights(weights, name), name, source.num_classes)
    classes = [str(c) for c in model.default_cfg.get("classes") or []]  # type: ignore[attr-defined]
    return model, D.InputConfig.from_model(model), classes


def _untrained(source: ModelSource) -> InceptionBase:
    from .models import create_model

    name, kwargs = str(source.model_name), dict(source.model_kwargs)
    num_classes = 1000 if source.num_classes is None else source.num_classes
    in_chans = 3 if source.in_chans is None else source.in_chans
    try:
        return create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:  # an unknown builder flag
        raise UsageError(f"bad --model-kwargs for {name}: {e}") from None
    except ValueError as e:
        if kwargs and not str(e).startswith("unknown model"):
            raise UsageError(f"bad --model-kwargs for {name}: {e}") from None
        raise


def _from_loaded(
    loaded: LoadedWeights, name: str, num_classes: int | None = None
) -> tuple[InceptionBase, D.InputConfig, list[str]]:
    """The model ``loaded`` holds, built as its metadata says and checked against it: the class list
    against the classifier, the data config's channels against the first conv."""
    from .models import get_model_builder
    from .models._builder import build_with_weights

    meta, sd, where = loaded.meta, loaded.state_dict, loaded.source
    rows = _classifier_size(sd, where)
    if meta.classes and rows != len(meta.classes):
        raise CheckpointError(
            f"{where} lists {len(meta.classes)} classes but its classifier has {rows} outputs: the "
            "class list and the weights do not belong together (a damaged or edited checkpoint?)"
        )
    conv = _first_conv_chans(sd, where)
    icfg = meta.input_config
    if icfg is not None and icfg.in_chans != conv:
        raise CheckpointError(
            f"{where}: its data_cfg says {icfg.in_chans} input channels but its first conv takes "
            f"{conv}; the metadata is damaged"
        )
    try:
        model = build_with_weights(
            name, get_model_builder(name), loaded, num_classes=num_classes or rows, in_chans=conv,
            new_head_ok=False,
        )  # fmt: skip
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        if not meta.model_kwargs:
            raise
        raise CheckpointError(
            f"{where}: its model_kwargs {excerpt(meta.model_kwargs)} do not build {name} "
            f"({first_line(e, 160)}); is it a checkpoint of another model or version?"
        ) from None
    model.sync_pool_size()
    classes = meta.classes or [str(c) for c in model.default_cfg.get("classes") or []]
    return model, icfg or D.InputConfig.from_model(model), classes


def _classifier_size(sd: Mapping[str, torch.Tensor], source: str = "these weights") -> int:
    for key in CLASSIFIER_KEYS:
        if key in sd and sd[key].dim() == 2:
            return int(sd[key].shape[0])
    raise CheckpointError(f"cannot tell the number of classes of {source} (no classifier found)")


def _first_conv_chans(sd: Mapping[str, torch.Tensor], source: str = "these weights") -> int:
    for v in sd.values():
        if v.dim() == 4:
            return int(v.shape[1])
    raise CheckpointError(f"cannot tell the input channels of {source} (no conv found)")


# --------------------------------------------------------------------------------------------------
# Exported files


def _open_onnx(source: ModelSource, device: torch.device) -> Predictor:
    from .deploy.export import open_onnx, ort_runner

    path = Path(str(source.path))
    f = open_onnx(path, device.type)
    run = ort_runner(f.session)
    if f.meta.get("input_dtype") == "uint8":  # exported --uint8-input: fed the images' bytes (deploy.pt2)
        from .deploy.pt2 import uint8_runner

        run = uint8_runner(run, f.meta)
    else:
        _check_graph_input(f.session.get_inputs()[0], f.icfg, f.fixed_batch, path)
    name = f.meta.get("model_name")
    name = name if isinstance(name, str) and 0 < len(name) <= 100 else path.stem
    return Predictor(
        _fixed_batch(run, f.fixed_batch), f.icfg, f.classes, name, source,
        backend="onnxruntime", dtype="fp32", device=device, meta=f.meta, fixed_batch=f.fixed_batch,
    )  # fmt: skip


MAX_FIXED_BATCH = 1024  # the batch a file exported with --batch N may fix (inputs are padded to it)


def _check_graph_input(inp: Any, icfg: D.InputConfig, fixed: int | None, path: Path) -> None:
    """The metadata's channels and size against the graph's declared input (N, C, H, W; a dimension
    that is a name is dynamic), so a file whose metadata lies is one line here, not an onnxruntime
    traceback or an allocation of the size it claims on the first image."""
    shape, fix = list(inp.shape or []), "the metadata does not match the graph: export the model again"
    if len(shape) != 4 or inp.type != "tensor(float)":
        raise CheckpointError(
            f"ONNX file {path}: its input is {excerpt(inp.type)} of shape {excerpt(shape)}, not float "
            "images (N, C, H, W); export the model with 'inceptionnet export'"
        )
    if fixed is not None and not 0 < fixed <= MAX_FIXED_BATCH:
        raise CheckpointError(
            f"ONNX file {path}: its input batch is {fixed}, not 1..{MAX_FIXED_BATCH}; {fix}"
        )
    said = (("channels", icfg.in_chans), ("height", icfg.input_size), ("width", icfg.input_size))
    for dim, (what, n) in zip(shape[1:], said, strict=True):
        if isinstance(dim, int) and dim != n:
            raise CheckpointError(
                f"ONNX file {path}: its metadata says {n} input {what} but the graph takes {dim}; {fix}"
            )


@dataclass(frozen=True)
class ExportedFormat:
    """One exported-file format that commands can run: a new format is one record in ``EXPORTED``."""

    name: str  # as messages name it: "ONNX file m.onnx", "runs ... with ONNX Runtime"
    suffixes: tuple[str, ...]  # the file suffixes that mean this format
    open: Callable[[ModelSource, torch.device], Predictor]


def _open_pt2(source: ModelSource, device: torch.device) -> Predictor:
    """A torch.export program or AOTInductor package (``deploy.pt2``; told apart by the zip's contents)."""
    from .deploy import pt2

    return _program_predictor(source, device, pt2.open_program)


def _open_pte(source: ModelSource, device: torch.device) -> Predictor:
    """An ExecuTorch program (``deploy.executorch``), run in ExecuTorch's runtime."""
    from .deploy.executorch import open_pte

    return _program_predictor(source, device, open_pte)


def _program_predictor(source: ModelSource, device: torch.device, opener: Callable[..., Any]) -> Predictor:
    from .data.config import class_names
    from .deploy import pt2
    from .deploy.export import input_config_from_metadata

    path = Path(str(source.path))
    f = opener(path, device.type)
    icfg = input_config_from_metadata(f.meta, str(path))
    n = pt2.check_input(f, (f.fixed_batch or 1, icfg.in_chans, icfg.input_size, icfg.input_size), path)
    classes = class_names(f.meta.get("classes"), str(path), error=CheckpointError, fix="export it again")
    if classes and len(classes) != n:
        raise CheckpointError(f"{path}: {len(classes)} class names in the metadata but {n} outputs")
    name = f.meta.get("model_name")
    run = pt2.uint8_runner(f.run, f.meta) if pt2.takes_uint8(f.meta) else f.run
    return Predictor(
        _fixed_batch(run, f.fixed_batch), icfg, classes or [str(i) for i in range(n)],
        name if isinstance(name, str) and 0 < len(name) <= 100 else path.stem, source, backend=f.runtime,
        dtype="fp32", device=device, meta=f.meta, fixed_batch=f.fixed_batch,
    )  # fmt: skip


EXPORTED: dict[str, ExportedFormat] = {
    "onnx": ExportedFormat("ONNX", (".onnx",), _open_onnx),
    "pt2": ExportedFormat("PT2", (".pt2",), _open_pt2),  # torch.export and AOTInductor
    "executorch": ExportedFormat("ExecuTorch", (".pte",), _open_pte),  # needs inceptionnet[executorch]
}
# an exported file's suffix -> its format
EXPORTED_FORMATS: dict[str, str] = {sfx: key for key, f in EXPORTED.items() for sfx in f.suffixes}


def _open_exported(source: ModelSource, device: torch.device, backend: str | None, dtype: str) -> Predictor:
    fmt = EXPORTED[source.format or "onnx"]
    name = fmt.name
    if backend is not None:
        raise UsageError(f"--onnx runs the exported {name} file in its own runtime; drop --backend")
    if dtype not in ("fp32", None):
        raise UsageError(f"--onnx runs the exported {name} file as it was exported; drop --dtype")
    return fmt.open(source, device)


def _fixed_batch(run: Callable[[Tensor], Tensor], fixed: int | None) -> Callable[[Tensor], Tensor]:
    """``run`` for any batch size when the file takes exactly ``fixed`` images: padded with copies of
    the last image and split, the extra rows dropped."""
    if fixed is None:
        return run

    def padded(x: Tensor) -> Tensor:
        outs = []
        for part in x.split(fixed):
            n = part.shape[0]
            if n < fixed:
                part = torch.cat([part, part[-1:].expand(fixed - n, *part.shape[1:])])
            outs.append(torch.as_tensor(run(part))[:n])
        return torch.cat(outs)

    return padded
