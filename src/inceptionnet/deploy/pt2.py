"""PyTorch 2 files: ``torch.export`` programs and AOTInductor packages (both ``.pt2``), and uint8 inputs.

    inceptionnet export --checkpoint best.pt -o model.pt2                  # torch.export.save
    inceptionnet export --checkpoint best.pt --format aoti -o model.pt2    # AOTInductor package
    inceptionnet export --checkpoint best.pt --uint8-input -o model.pt2    # takes N x H x W x C uint8
    inceptionnet predict --onnx model.pt2 photo.png

Both kinds are zip archives with the metadata of every exported file (``export.build_metadata``) as
the entry ``<archive>/extra/inceptionnet.json``: ``torch.export.save(..., extra_files=...)`` writes it
there for a program, and for an AOTInductor package (which takes no extra files) it is added to the
zip after compiling, in the same place; ``torch._inductor.aoti_load_package`` ignores it. The two
kinds are told apart by what else the zip holds: ``<archive>/models/*.json`` (a serialized
``ExportedProgram``) or ``<archive>/data/aotinductor/`` (compiled code). Neither needs this package
to run (README, "Exported files without inceptionnet").

Opening an AOTInductor package loads the shared library in it: it runs native code, like any
compiled model; open only packages you trust (as with a pickle).

``--uint8-input``: the exported graph is ``Uint8Input(model)``, taking the images as a decoder gives
them (``uint8``, N x H x W x C, already resized and cropped to the input size) and doing what
``data.transforms.to_model_input`` does inside the graph (to float, / 255 unless the weights take
0-255, RGB -> BGR where the weights expect it, mean / std, NCHW). The metadata says
``"input_dtype": "uint8", "input_layout": "NHWC"``; ``predict`` / ``eval`` / ``serve`` turn their
prepared float batch back into those exact bytes (``to_uint8_images``: the preprocessing divides
uint8 values by 255, so the round trip is exact) before running the file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ExportError, UsageError, excerpt, first_line
from ..runtime import quiet_output

META_NAME = "inceptionnet.json"  # the metadata entry: <archive>/extra/inceptionnet.json
OURS_KEY = "inceptionnet_version"  # the key every exported file's metadata carries
KINDS = {"pt2": "torch.export program", "aoti": "AOTInductor package"}
MAX_BATCH = 1024  # the dynamic batch axis' upper bound (torch.export needs one to reason about shapes)
MAX_META_BYTES = 16 << 20  # class names of ImageNet-21k are ~0.5 MB; more is not ours
UINT8_META = {"input_dtype": "uint8", "input_layout": "NHWC"}


# --------------------------------------------------------------------------------------------------
# uint8 images in


class Uint8Input(nn.Module):
    """``model`` taking uint8 N x H x W x C images: the preprocessing of ``to_model_input`` in the graph."""

    mean: Tensor
    std: Tensor

    def __init__(
        self, model: nn.Module, mean: Any, std: Any, *, scale: bool = True, bgr: bool = False
    ) -> None:
        super().__init__()
        self.model, self.scale, self.bgr = model, scale, bgr
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_metadata(cls, model: nn.Module, meta: Mapping[str, Any]) -> Uint8Input:
        """The wrapper ``meta`` (``export.build_metadata``'s) describes: mean, std, input range, space."""
        input_range = meta.get("input_range") or (0.0, 1.0)
        return cls(
            model, meta["mean"], meta["std"], scale=float(input_range[1]) <= 1.0,
            bgr=meta.get("input_space") == "BGR",
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 3, 1, 2).to(torch.float32)
        if self.scale:
            y = y / 255.0
        if self.bgr:
            y = y.flip(1)
        out = self.model((y - self.mean) / self.std)
        assert isinstance(out, Tensor)
        return out


def to_uint8_images(x: Tensor, meta: Mapping[str, Any]) -> Tensor:
    """A prepared float batch (N x C x H x W, normalized) back to the uint8 N x H x W x C images it was
    made from: the inverse of ``to_model_input``, exact because those images were uint8 / 255."""
    mean = torch.tensor(meta["mean"], dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    y = x.float() * std + mean
    if meta.get("input_space") == "BGR":
        y = y.flip(1)
    if float((meta.get("input_range") or (0.0, 1.0))[1]) <= 1.0:
        y = y * 255.0
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def takes_uint8(meta: Mapping[str, Any]) -> bool:
    return meta.get("input_dtype") == "uint8"


def uint8_runner(run: Callable[[Tensor], Tensor], meta: Mapping[str, Any]) -> Callable[[Tensor], Tensor]:
    """``run`` (a file taking uint8 images) as predictors call it: on prepared float batches."""
    return lambda x: run(to_uint8_images(x, meta))


# --------------------------------------------------------------------------------------------------
# Writing


class ExportJob(Protocol):
    """What ``export._Job`` gives a writer here (kept a protocol so this module does not import export)."""

    model: nn.Module
    reference: nn.Module
    example: Tensor
    x: Tensor
    meta: dict[str, Any]
    batch: int | None
    quiet: bool
    int8_calibration: Tensor | None
    result: dict[str, Any]

    @property
    def say(self) -> Callable[[str], None]: ...

    def describe(self) -> str: ...

    def checked(self, got: Tensor, what: str, runner: str) -> None: ...


def export_program(
    model: nn.Module, example: Tensor, batch: int | None, *, max_batch: int = MAX_BATCH
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` on ``example``; the batch axis dynamic (1..``max_batch``)
    unless ``batch`` fixes it."""
    shapes = None if batch is not None else ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)


def write_program(j: ExportJob, tmp: str, *, aoti: bool) -> None:
    """``j.model`` as a ``.pt2`` (program, or AOTInductor package with ``aoti``) at ``tmp``, reloaded
    from the file and checked against eager before it is kept."""
    kind = "aoti" if aoti else "pt2"
    try:
        with quiet_output(j.quiet), torch.no_grad():
            ep = export_program(j.model, j.example, j.batch)
    except Exception as e:
        raise ExportError(f"torch.export failed: {first_line(e)}") from e
    j.meta.update(exporter="torch.export", torch=torch.__version__.split("+")[0], pt2_kind=kind)
    text = json.dumps(j.meta)
    name = j.meta.get("model_name", type(j.model).__name__)
    with tempfile.TemporaryDirectory(prefix="inceptionnet-pt2-") as d:
        out = str(Path(d) / "model.pt2")  # aoti_compile_and_package wants a name ending in .pt2
        if aoti:
            try:
                with quiet_output(j.quiet):
                    torch._inductor.aoti_compile_and_package(ep, package_path=out)
            except Exception as e:
                raise ExportError(f"AOTInductor compilation failed: {first_line(e)}") from e
            with zipfile.ZipFile(out, "a") as z:  # the archive's folder is "model" (the file's stem)
                z.writestr(f"model/extra/{META_NAME}", text)
        else:
            torch.export.save(ep, out, extra_files={META_NAME: text})
        j.say(f"exported {name} as a {KINDS[kind]} with torch {j.meta['torch']}, {j.describe()}")
        program = open_program(Path(out), "cpu", quiet=j.quiet)
        if program.meta != json.loads(text):
            raise ExportError(f"the {KINDS[kind]}'s metadata did not survive reloading")
        try:
            with torch.no_grad():
                got = program.run(j.x)
        except Exception as e:
            raise ExportError(f"the reloaded {KINDS[kind]} does not run: {first_line(e)}") from e
        j.checked(got, f"reloaded {KINDS[kind]}", f"reloaded {KINDS[kind]}")
        j.result.update(exporter="torch.export" + (" + AOTInductor" if aoti else ""))
        shutil.copyfile(out, tmp)


# --------------------------------------------------------------------------------------------------
# Recognising and opening


def pt2_kind(path: str | Path) -> str | None:
    """The kind of a .pt2 zip from its names: "pt2" (a torch.export program), "aoti" (an AOTInductor
    package) or None."""
    from ..fileio import zip_members

    names = zip_members(path)
    if any("/data/aotinductor/" in n for n in names):
        return "aoti"
    if any(n.count("/") == 2 and "/models/" in n and n.endswith(".json") for n in names):
        return "pt2"
    return None


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The metadata entry of a ``.pt2`` zip (a JSON object), or None when it has none or is damaged."""
    try:
        with zipfile.ZipFile(path) as z:
            entries = [i for i in z.infolist() if i.filename.endswith(f"/extra/{META_NAME}")]
            if len(entries) != 1 or entries[0].file_size > MAX_META_BYTES:
                return None
            meta = json.loads(z.read(entries[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError, EOFError):
        return None
    return meta if isinstance(meta, dict) else None


def written_by_us(path: str | Path) -> bool:
    """A ``.pt2`` that ``export`` wrote: a program or package with our metadata entry (the output rule)."""
    meta = read_metadata(path)
    return pt2_kind(path) is not None and meta is not None and OURS_KEY in meta


@dataclass
class Program:
    """An opened ``.pt2``: ``run(x) -> logits`` and its metadata."""

    run: Callable[[Tensor], Tensor]
    meta: dict[str, Any]
    kind: str  # "pt2" | "aoti" | "executorch" (a .pte: deploy.executorch)
    fixed_batch: int | None

    @property
    def runtime(self) -> str:
        return {"pt2": "torch.export", "aoti": "aotinductor"}.get(self.kind, self.kind)


def open_program(path: Path, device: str = "cpu", *, quiet: bool = True) -> Program:
    """A ``.pt2`` this package exported, loaded (one ``CheckpointError`` line for a file that is
    damaged, truncated, of another kind or without our metadata)."""
    from ..fileio import input_file_kind

    input_file_kind(path, ".pt2 file", "export it again")
    kind, meta = pt2_kind(path), read_metadata(path)
    if kind is None:
        raise CheckpointError(
            f"{path} is not a torch.export program or AOTInductor package (damaged, truncated or another "
            "kind of file); export it with 'inceptionnet export --format pt2|aoti'"
        )
    if meta is None or OURS_KEY not in meta:
        raise CheckpointError(
            f"{path} has no inceptionnet metadata ({META_NAME}), so its preprocessing is unknown; "
            "export it with 'inceptionnet export'"
        )
    if kind == "aoti" and device != "cpu":
        raise UsageError(f"{path} is an AOTInductor package compiled for the CPU; use --device cpu")
    batch = meta.get("batch")
    fixed = batch if type(batch) is int else None
    try:
        with quiet_output(quiet):
            run = _load(path, kind, device)
    except Exception as e:  # torch raises RuntimeError / KeyError / ValueError for damaged archives
        raise CheckpointError(f"cannot load {KINDS[kind]} {path}: {first_line(e, 200)}") from None
    return Program(run, meta, kind, fixed)


def _load(path: Path, kind: str, device: str) -> Callable[[Tensor], Tensor]:
    if kind == "aoti":
        compiled = torch._inductor.aoti_load_package(str(path))
        return lambda x: compiled(x.contiguous())
    module = torch.export.load(str(path)).module().to(device)

    def run(x: Tensor) -> Tensor:  # the program's batch axis is bounded: larger batches in parts
        with torch.no_grad():
            return torch.cat([module(part) for part in x.split(MAX_BATCH)])

    return run


def check_input(program: Program, shape: tuple[int, ...], path: Path) -> int:
    """Run ``program`` once on zeros of the input ``shape`` its metadata says (N x C x H x W): a file
    whose metadata lies about its input is one line here. Returns its number of outputs."""
    n, c, h, w = shape
    x = torch.zeros(n, h, w, c, dtype=torch.uint8) if takes_uint8(program.meta) else torch.zeros(n, c, h, w)
    try:
        with torch.no_grad():
            out = program.run(x)
    except Exception as e:
        raise CheckpointError(
            f"{path}: the program does not take the input its metadata says ({excerpt(list(x.shape))} "
            f"{str(x.dtype).removeprefix('torch.')}): {first_line(e, 160)}; export the model again"
        ) from None
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise CheckpointError(f"{path}: the program does not return logits (N x classes); export it again")
    return int(out.shape[1])
