"""``inceptionnet embed``: one vector per image (retrieval, kNN, clustering), written to a safetensors file.

    inceptionnet embed googlenet --weights imagenet1k_v1 photos/ -o embeddings.safetensors
    inceptionnet embed inception_resnet_v1 --weights vggface2 faces/ -o faces.safetensors
    inceptionnet embed --checkpoint runs/x/best.pt shirts/ -o shirts.safetensors --stage 3

The vectors are the model's pooled features (what its classifier reads; ``num_classes=0``), or with
``--stage N`` the feature map of stage N (``feature_info``) globally average-pooled; with the face
weights of inception_resnet_v1 they are its L2-normalized 512-d embeddings. The file holds the
tensor ``embeddings`` (N x D, float32, in the order of the file list) and its metadata the file list
(``files``, JSON) and how the vectors were made. Folders are searched recursively for image files
(sorted); an unreadable image prints ``error: ...`` and is left out (exit code 2 at the end). The
output is written atomically, never over an input, a device or a file this command did not write
(unless ``--overwrite``; never over a checkpoint or weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as D
from ..errors import ImageReadError, NonFiniteError, UsageError
from ..fileio import atomic_write, check_output_file, is_safetensors
from ..runtime import DEVICE_HELP, flush_denormal, resolve_device
from ._args import add_image_limit_args, add_pipeline_args

FORMAT = "inceptionnet-embeddings"


class _Parser(argparse.ArgumentParser):
    """Options between the inputs too (``embed MODEL --weights W DIR -o OUT``)."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return self.parse_intermixed_args(args, namespace)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = _Parser(
        description="Embed images: a model's pooled features (or a stage's, globally pooled) per image, "
        "with the file list, in a safetensors file.",
        add_help=add_help,
    )
    p.add_argument(
        "items", nargs="+", metavar="MODEL / INPUT",
        help="the model name (leave it out with --checkpoint), then image files or folders (searched recursively)",
    )  # fmt: skip
    p.add_argument(
        "--weights", default=None, help="weight entry (e.g. imagenet1k_v1) or .pth/.safetensors file"
    )
    p.add_argument("--checkpoint", default=None, help="a training checkpoint instead of MODEL --weights")
    p.add_argument("-o", "--output", required=True, help="the embeddings file to write (.safetensors)")
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing -o file that is not an earlier embeddings file (never a checkpoint or weights)",
    )  # fmt: skip
    p.add_argument(
        "--stage", type=int, default=None,
        help="embed the feature map of this stage (0 = the first of feature_info; negative from the end), "
        "globally average-pooled, instead of the pooled final features",
    )  # fmt: skip
    add_pipeline_args(p)
    p.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default cpu)")
    add_image_limit_args(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def image_files(inputs: Sequence[str]) -> list[Path]:
    """The files to embed: files as given, folders searched recursively for image files (sorted;
    ``data.folder_images``: entries that cannot be read are kept, so that each gets its error line)."""
    files: list[Path] = []
    for item in inputs:
        if not str(item).strip():
            raise UsageError("an input path is empty (''); give image files or folders")
        p = Path(item)
        if p.is_dir():
            found = D.folder_images(p, recursive=True)
            if not found:
                raise FileNotFoundError(
                    f"folder {p} holds no image files ({', '.join(D.IMAGE_EXTENSIONS[:6])}, ...)"
                )
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"image or folder {p} does not exist")
    return files


def _format_of(path: Path) -> str | None:
    if not is_safetensors(path):
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # noqa: BLE001 - a damaged file: not ours to replace
        return None


def run_embed(
    inputs: Sequence[str],
    output: str,
    *,
    model_name: str | None = None,
    weights: str | None = None,
    checkpoint: str | None = None,
    stage: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    overwrite: bool = False,
    workers: int | None = None,
    jpeg_draft: bool = False,
) -> tuple[int, list[str]]:
    """Embed ``inputs`` into ``output``; returns (vectors written, error lines of unreadable files)."""
    from .. import pipeline as P
    from ..checkpoint import ModelSource, open_model
    from ..models.inception_resnet import L2Norm

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must not be negative, got {workers}")
    files = image_files(inputs)
    sources = [Path(s) for s in (checkpoint, weights) if s and Path(s).is_file()]
    out = check_output_file(
        output, "-o", [("input", p) for p in [*files, *sources]],
        ours=lambda p: _format_of(p) == FORMAT, overwrite=overwrite, what="an embeddings file",
        example="embeddings.safetensors",
    )  # fmt: skip
    dev = resolve_device(device)
    model, icfg, _, name = open_model(ModelSource.from_flags(checkpoint, model_name, weights), dev)
    model.reset_classifier(0)  # the pooled features (facenet's head: the L2-normalized embedding)
    n_stages = len(model.feature_info)
    if stage is not None and not -n_stages <= stage < n_stages:
        raise UsageError(f"--stage must be in 0..{n_stages - 1} (or negative from the end), got {stage}")
    stage = None if stage is None else stage % n_stages
    transform = D.eval_transform(icfg, icfg.in_chans, native_size=-1)

    def embed(x: Tensor) -> Tensor:
        if stage is None:
            return model(x)
        maps = model.forward_intermediates(x, indices=[stage], stop_early=True, intermediates_only=True)
        return maps[0].mean((2, 3))

    vectors: list[Tensor] = []
    done: list[str] = []
    errors: list[str] = []

    def emit(results: list[P.Result]) -> None:
        for r in results:
            if r.error is not None:
                errors.append(r.error)
                print(f"error: {r.error}", file=sys.stderr)
            else:
                done.append(r.path)
                vectors.append(r.row)

    with flush_denormal():  # decoded by the pipeline's workers while the model runs here
        P.stream(
            list(enumerate(map(str, files))), lambda x: embed(x.to(dev)), lambda _, y: list(y), emit,
            in_chans=icfg.in_chans, transform=transform, batch_size=batch_size, workers=workers, desc="embed",
            draft=jpeg_draft,
        )  # fmt: skip
    if not vectors:
        raise ImageReadError(f"none of the {len(files)} files could be read; nothing written")
    emb = torch.stack(vectors).contiguous()
    if not bool(torch.isfinite(emb).all()):
        raise NonFiniteError("some embeddings are not finite (NaN/inf): the weights or the inputs overflow")
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model": name,
        "source": checkpoint or str(weights),
        "stage": "pooled" if stage is None else str(stage),
        "module": "" if stage is None else model.feature_info[stage]["module"],
        "normalized": json.dumps(stage is None and isinstance(model.get_classifier(), L2Norm)),
        "dim": str(emb.shape[1]),
        "count": str(emb.shape[0]),
        "input": json.dumps(icfg.to_dict()),
        "files": json.dumps(done),
    }

    def write(tmp: str) -> None:
        from safetensors.torch import save_file

        save_file({"embeddings": emb}, tmp, metadata={k: str(v) for k, v in meta.items()})

    atomic_write(out, write)
    print(f"wrote {emb.shape[0]} embeddings of dimension {emb.shape[1]} ({name}, {meta['stage']}) to {out}")
    return emb.shape[0], errors


def main(args: argparse.Namespace) -> int:
    from ..models import list_models

    items = list(args.items)
    model_name = None
    if not args.checkpoint:
        model_name = items.pop(0)
        if model_name not in list_models():
            from ..models._registry import unknown_model_message

            raise UsageError(f"{unknown_model_message(model_name)}; usage: embed MODEL --weights W INPUT...")
        if not args.weights:
            raise UsageError(
                f"embed {model_name} needs --weights (an entry name or a file), or use --checkpoint"
            )
    elif len(items) > 1 and items[0] in list_models() and not Path(items[0]).exists():
        model_name = items.pop(0)  # embed MODEL --checkpoint FILE ...: checked against the checkpoint
    if not items:
        raise UsageError("give image files or folders to embed")
    _, errors = run_embed(
        items, args.output, model_name=model_name, weights=args.weights, checkpoint=args.checkpoint,
        stage=args.stage, batch_size=args.batch_size, device=args.device, overwrite=args.overwrite,
        workers=args.workers, jpeg_draft=args.jpeg_draft,
    )  # fmt: skip
    return 2 if errors else 0
