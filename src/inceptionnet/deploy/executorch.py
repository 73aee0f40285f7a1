"""ExecuTorch programs (``.pte``, the XNNPACK delegate): the phone / edge format; the optional extra
``inceptionnet[executorch]``.

    inceptionnet export --checkpoint best.pt -o model.pte                          # fp32, XNNPACK
    inceptionnet export --checkpoint best.pt --int8 --calibration fashion_mnist:train -o model-int8.pte
    inceptionnet export --checkpoint best.pt --uint8-input -o model.pte            # takes N x H x W x C uint8
    inceptionnet predict --onnx model.pte photo.png

The program is ``torch.export`` of the model (BatchNorm folded into the convs first: XNNPACK would
fuse it anyway, and the smaller graph lowers ~2x faster), lowered with ``to_edge_transform_and_lower``
and the ``XnnpackPartitioner`` (every op of the Inception models is delegated), dynamic batch 1..
``MAX_BATCH`` unless ``--batch`` fixes it (ExecuTorch plans its input buffers for the upper bound;
larger batches run in parts). ``--int8``: the PT2E flow with ExecuTorch's ``XNNPACKQuantizer``
(symmetric, per-channel weights, static int8 activations) calibrated on the ``--calibration`` images,
kept only when top-1 agreement with eager fp32 on them is >= 99 % (``verify.check_int8_agreement``).

The metadata of every exported file (``export.build_metadata``) is inside the program: a constant
method ``inceptionnet_metadata`` returning its JSON text (``constant_methods`` of the lowering), read
with ExecuTorch's runtime alone:

    from executorch.runtime import Runtime
    program = Runtime.get().load_program("model.pte")
    meta = json.loads(program.load_method("inceptionnet_metadata").execute([])[0])
    logits = program.load_method("forward").execute([x])[0]
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ExportError, UsageError, first_line
from ..runtime import quiet_output
from .pt2 import OURS_KEY, ExportJob, Program, export_program

INSTALL_HINT = "pip install 'inceptionnet[executorch]'"
META_METHOD = "inceptionnet_metadata"  # the constant method holding the metadata's JSON text
MAX_BATCH = 32  # the dynamic batch axis' upper bound (ExecuTorch plans its input buffer for it)
NAME = "ExecuTorch program"
_FD_LOCK = threading.RLock()


def require(what: str = "--format executorch") -> Any:
    """``executorch.runtime``; one ``UsageError`` line naming the extra when it is not installed."""
    try:
        with quiet_output(), _quiet_native():
            import executorch.runtime as rt
    except ImportError as e:
        raise UsageError(f"{what} needs ExecuTorch: {INSTALL_HINT} ({first_line(e, 120)})") from None
    return rt


@contextlib.contextmanager
def _quiet_native(enabled: bool = True) -> Iterator[None]:
    """ExecuTorch's C++ logs (cpuinfo probing, loader errors) go to file descriptor 2 directly:
    silenced there too unless ``--debug``; the errors they describe become one line each."""
    if not enabled:
        yield
        return
    with _FD_LOCK:  # one redirection at a time: a second would save (and restore) /dev/null
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# --------------------------------------------------------------------------------------------------
# Writing


def lower(model: nn.Module, example: Tensor, batch: int | None, meta: dict[str, Any],
          calibration: Tensor | None = None) -> bytes:  # fmt: skip
    """The ``.pte`` bytes of ``model`` (fp32, or int8 calibrated on ``calibration``) with XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from .fold import fold_bn

    model = fold_bn(model)
    with torch.no_grad():
        if calibration is not None:
            model = _quantized(model, example, batch, calibration)
        ep = export_program(model, example, batch, max_batch=MAX_BATCH)
    edge = to_edge_transform_and_lower(
        ep, partitioner=[XnnpackPartitioner()], constant_methods={META_METHOD: json.dumps(meta)},
        compile_config=EdgeCompileConfig(_check_ir_validity=False),  # the partitioner checks what it takes
    )  # fmt: skip
    return bytes(edge.to_executorch().buffer)


def _quantized(model: nn.Module, example: Tensor, batch: int | None, images: Tensor) -> nn.Module:
    """PT2E static int8 with ExecuTorch's XNNPACKQuantizer, calibrated on ``images``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(export_program(model, example, batch, max_batch=MAX_BATCH).module(), quantizer)
    for part in images.split(batch or MAX_BATCH):
        prepared(_padded(part, batch))
    return convert_pt2e(prepared)


def _padded(x: Tensor, batch: int | None) -> Tensor:
    """``x`` padded to ``batch`` rows with copies of its last row (a fixed-batch program's input)."""
    if batch is None or len(x) == batch:
        return x
    return torch.cat([x, x[-1:].expand(batch - len(x), *x.shape[1:])])


def write_pte(j: ExportJob, tmp: str) -> None:
    """``j.model`` as a ``.pte`` at ``tmp`` (int8 with ``j.int8_calibration``), reloaded with
    ExecuTorch's runtime and checked against eager (int8: by top-1 agreement) before it is kept."""
    import executorch

    images = j.int8_calibration
    j.meta.update(exporter="torch.export + ExecuTorch", executorch=_version(executorch), delegate="XNNPACK")
    if images is not None:
        j.meta.update(precision="int8", quantization=f"ExecuTorch XNNPACKQuantizer (PT2E), per-channel, "
                                                     f"{len(images)} images")  # fmt: skip
    try:
        with quiet_output(j.quiet), _quiet_native(j.quiet):
            data = lower(j.model, j.example, j.batch, j.meta, images)
    except Exception as e:
        raise ExportError(f"ExecuTorch lowering failed: {first_line(e)}") from e
    Path(tmp).write_bytes(data)
    name = j.meta.get("model_name", type(j.model).__name__)
    what = "int8 " if images is not None else ""
    j.say(
        f"exported {name} as an {what}{NAME} (XNNPACK) with executorch {j.meta['executorch']}, {j.describe()}"
    )
    program = open_pte(Path(tmp), "cpu", quiet=j.quiet)
    if program.meta != json.loads(json.dumps(j.meta)):
        raise ExportError(f"the {NAME}'s metadata did not survive reloading")
    if images is not None:
        from .verify import check_int8_agreement

        try:
            agree = check_int8_agreement(program.run, images, j.reference, f"int8 {NAME}")
        except RuntimeError as e:
            raise ExportError(f"the reloaded int8 {NAME} does not run: {first_line(e)}") from e
        j.result.update(agreement=agree, diff=float("nan"), tol=float("nan"))
        j.say(
            f"ExecuTorch int8 vs eager PyTorch: top-1 agreement {agree:.4f} on {len(images)} calibration images"
        )
    else:
        try:
            got = program.run(j.x)
        except RuntimeError as e:
            raise ExportError(f"the reloaded {NAME} does not run: {first_line(e)}") from e
        j.checked(got, f"reloaded {NAME}", f"reloaded {NAME} (ExecuTorch runtime)")
    j.result.update(exporter="torch.export + ExecuTorch XNNPACK")


def _version(module: Any) -> str:
    from importlib.metadata import version

    return str(getattr(module, "__version__", None) or version("executorch")).split("+")[0]


# --------------------------------------------------------------------------------------------------
# Recognising and opening


def looks_like_pte(path: str | Path) -> bool:
    """An ExecuTorch flatbuffer by its first bytes: the file identifier ``ET`` + 2 digits at offset 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:6] == b"ET" and head[6:8].isdigit()


def _load_program(path: Path, quiet: bool = True) -> Any:
    """``executorch.runtime.Program`` of ``path`` (RuntimeError for a file it cannot load)."""
    rt = require(f"{path}: running an ExecuTorch program")
    with quiet_output(quiet), _quiet_native(quiet):
        return rt.Runtime.get().load_program(str(path))


def load_forward(path: Path, quiet: bool = True) -> Any:
    """The ``forward`` method of the ``.pte`` at ``path``, loaded (RuntimeError for a file it cannot load)."""
    program = _load_program(path, quiet)
    with quiet_output(quiet), _quiet_native(quiet):
        return program.load_method("forward")


def _metadata(program: Any, quiet: bool = True) -> dict[str, Any] | None:
    if META_METHOD not in program.method_names:
        return None
    try:
        with quiet_output(quiet), _quiet_native(quiet):
            out = program.load_method(META_METHOD).execute([])
        meta = json.loads(out[0]) if len(out) == 1 and isinstance(out[0], str) else None
    except (RuntimeError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The metadata a ``.pte`` holds (a JSON object), or None: not a program, damaged, or none in it."""
    if not looks_like_pte(path):
        return None
    try:
        return _metadata(_load_program(Path(path)))
    except (RuntimeError, UsageError):
        return None


def written_by_us(path: str | Path) -> bool:
    """A ``.pte`` that ``export`` wrote: an ExecuTorch program with our metadata (the output rule)."""
    meta = read_metadata(path)
    return meta is not None and OURS_KEY in meta


def open_pte(path: Path, device: str = "cpu", *, quiet: bool = True) -> Program:
    """A ``.pte`` this package exported, loaded in ExecuTorch's runtime (one ``CheckpointError`` line
    for a file that is damaged, truncated, of another kind or without our metadata)."""
    from ..fileio import input_file_kind

    input_file_kind(path, ".pte file", "export it again")
    if device != "cpu":
        raise UsageError(f"{path} is an ExecuTorch program for the CPU (XNNPACK); use --device cpu")
    bad = (f"{path} is not an ExecuTorch program (damaged, truncated or another kind of file); "
           "export it with 'inceptionnet export --format executorch'")  # fmt: skip
    if not looks_like_pte(path):
        raise CheckpointError(bad)
    try:
        program = _load_program(path, quiet)
    except RuntimeError as e:
        raise CheckpointError(f"{bad} ({first_line(e, 120)})") from None
    meta = _metadata(program, quiet)
    if meta is None or OURS_KEY not in meta:
        raise CheckpointError(
            f"{path} has no inceptionnet metadata ({META_METHOD}), so its preprocessing is unknown; "
            "export it with 'inceptionnet export --format executorch'"
        )
    try:
        with quiet_output(quiet), _quiet_native(quiet):
            forward = program.load_method("forward")
    except RuntimeError as e:
        raise CheckpointError(f"cannot load {NAME} {path}: {first_line(e, 200)}") from None
    batch = meta.get("batch")
    fixed = batch if type(batch) is int else None
    return Program(method_runner(forward, fixed), meta, "executorch", fixed)


def method_runner(forward: Any, fixed: int | None) -> Callable[[Tensor], Tensor]:
    """``run(x) -> logits``: a batch larger than the program's input buffer in parts. The capacity is
    read from the method (ExecuTorch 1.5.1's XNNPACK lowering narrows the bound it was given: 32 -> 15)."""
    capacity = fixed or int(forward.metadata.input_tensor_meta(0).sizes()[0])

    def run(x: Tensor) -> Tensor:
        x = x.detach().cpu()
        x = x if x.dtype == torch.uint8 else x.float()
        parts = [forward.execute([_padded(p, fixed).contiguous()])[0][: len(p)] for p in x.split(capacity)]
        return torch.cat([torch.as_tensor(o) for o in parts])

    return run
