"""Weight entries, safe loading and key remapping.

Files are read with ``torch.load(weights_only=True)`` or safetensors: a pickle that would run code is
refused. ``create_model(name, weights=...)`` accepts a weight entry name (``list_weights(name)``) or a
local ``.pth`` / ``.pt`` / ``.safetensors`` file: a bare state_dict, a training checkpoint of this
project (``{"model": ..., "model_kwargs": ...}``), or a known third-party layout (see ``KEY_MAPS``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .data import INFO as DATA_INFO
from .errors import CheckpointError
from .layers import InceptionBase

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class WeightEntry:
    """A named set of weights for one model, with what is needed to use them."""

    model: str
    tag: str
    url: str | None = None  # http(s) URL, or None for files shipped inside the package
    filename: str = ""
    sha256: str | None = None  # full hex digest, or a prefix (torchvision's file-name convention)
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    input_space: str = "RGB"  # "BGR": channels reversed (Caffe models)
    input_range: tuple[float, float] = (0.0, 1.0)  # (0, 255): pixel values not scaled to [0, 1]
    accuracy: Mapping[str, float] = field(default_factory=dict)
    params: int | None = None
    gmacs: float | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    key_map: str | None = None  # name in KEY_MAPS for third-party layouts
    source: str = ""


_ENTRIES: dict[str, dict[str, WeightEntry]] = {}


def register_weights(entry: WeightEntry) -> WeightEntry:
    _ENTRIES.setdefault(entry.model, {})[entry.tag] = entry
    return entry


def list_weights(model: str) -> list[str]:
    """Tags of the weight entries of ``model`` (``create_model(model, weights=tag)``)."""
    return sorted(_ENTRIES.get(model, {}))


def get_weight_entry(model: str, tag: str) -> WeightEntry | None:
    return _ENTRIES.get(model, {}).get(tag)


register_weights(WeightEntry(
    model="googlenet", tag="imagenet1k_v1",
    url="https://download.pytorch.org/models/googlenet-1378be20.pth", filename="googlenet-1378be20.pth",
    sha256="1378be20", accuracy={"imagenet1k_top1": 69.778, "imagenet1k_top5": 89.530},
    params=6624904, gmacs=1.498, model_kwargs={"transform_input": True},
    source="torchvision GoogLeNet_Weights.IMAGENET1K_V1 (ported from TensorFlow)",
))  # fmt: skip

register_weights(WeightEntry(
    model="inception_v3", tag="imagenet1k_v1",
    url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    filename="inception_v3_google-0cc3c7bd.pth", sha256="0cc3c7bd",
    input_size=(3, 299, 299), crop_pct=299 / 342,
    accuracy={"imagenet1k_top1": 77.294, "imagenet1k_top5": 93.450},
    params=27161264, gmacs=5.713, model_kwargs={"transform_input": True},
    source="torchvision Inception_V3_Weights.IMAGENET1K_V1 (ported from TensorFlow); the file holds the "
    "AuxLogits head, loaded with aux_logits=True and skipped otherwise",
))  # fmt: skip

register_weights(WeightEntry(
    model="inception_v4", tag="tf_in1k",
    url="https://huggingface.co/timm/inception_v4.tf_in1k/resolve/main/model.safetensors",
    filename="timm-inception_v4.tf_in1k.safetensors",
    input_size=(3, 299, 299), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    interpolation="bicubic", crop_pct=0.875,
    accuracy={"imagenet1k_top1": 80.062, "imagenet1k_top5": 94.926},
    params=42679816, gmacs=12.254,
    source="timm hub id timm/inception_v4.tf_in1k (TF-slim weights); accuracy of this port as "
    "measured by pretrainedmodels (TF-slim reports 80.2 / 95.2)",
))  # fmt: skip

register_weights(WeightEntry(
    model="inception_resnet_v2", tag="tf_in1k",
    url="https://huggingface.co/timm/inception_resnet_v2.tf_in1k/resolve/main/model.safetensors",
    filename="timm-inception_resnet_v2.tf_in1k.safetensors",
    input_size=(3, 299, 299), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    interpolation="bicubic", crop_pct=0.8975,
    accuracy={"imagenet1k_top1": 80.170, "imagenet1k_top5": 95.234},
    params=55843464, gmacs=13.156,
    source="timm hub id timm/inception_resnet_v2.tf_in1k (TF-slim weights); accuracy of this port as "
    "measured by pretrainedmodels (TF-slim reports 80.4 / 95.3)",
))  # fmt: skip

# BGR, 0-255 input minus a per-channel mean in BGR order (Caffe): x = 255 * rgb[::-1] - mean, std 1.
register_weights(WeightEntry(
    model="bn_inception", tag="imagenet_caffe",
    url="http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    filename="bn_inception-52deb4733.pth",
    input_size=(3, 224, 224), mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0),
    interpolation="bilinear", crop_pct=0.875, input_space="BGR", input_range=(0.0, 255.0),
    accuracy={"imagenet1k_top1": 73.524, "imagenet1k_top5": 91.562},
    params=11295240, gmacs=2.033, key_map="pretrainedmodels_bninception",
    source="pretrainedmodels bninception 'imagenet' (Caffe BN-Inception of Yuanjun Xiong, ported to "
    "PyTorch by Cadene); accuracy as measured by pretrainedmodels",
))  # fmt: skip

# facenet-pytorch: faces cropped by MTCNN to 160x160, fixed_image_standardization (x - 127.5) / 128.
_FACENET_KWARGS = {"embed_dim": 512, "num_blocks": (5, 10, 6), "slim_final_block": True, "drop_rate": 0.6}
register_weights(WeightEntry(
    model="inception_resnet_v1", tag="vggface2",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    filename="20180402-114759-vggface2.pt", num_classes=8631,
    input_size=(3, 160, 160), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3,
    interpolation="bilinear", crop_pct=1.0,
    accuracy={"lfw_accuracy": 99.65}, params=27910327, gmacs=1.418,
    model_kwargs=_FACENET_KWARGS, key_map="facenet_inception_resnet_v1",
    source="facenet-pytorch InceptionResnetV1(pretrained='vggface2') (David Sandberg's FaceNet "
    "20180402-114759); use num_classes=0 for its L2-normalized 512-d face embeddings",
))  # fmt: skip

register_weights(WeightEntry(
    model="inception_resnet_v1", tag="casia_webface",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
    filename="20180408-102900-casia-webface.pt", num_classes=10575,
    input_size=(3, 160, 160), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3,
    interpolation="bilinear", crop_pct=1.0,
    accuracy={"lfw_accuracy": 99.05}, params=28907599, gmacs=1.418,
    model_kwargs=_FACENET_KWARGS, key_map="facenet_inception_resnet_v1",
    source="facenet-pytorch InceptionResnetV1(pretrained='casia-webface') (David Sandberg's FaceNet "
    "20180408-102900); use num_classes=0 for its L2-normalized 512-d face embeddings",
))  # fmt: skip


_FM = DATA_INFO["fashion_mnist"]  # the training data's normalization and class names

register_weights(WeightEntry(
    model="googlenet_small", tag="fashion_mnist",
    url=None, filename="googlenet_small-fashion_mnist-9c8a2da6.safetensors", sha256="9c8a2da61c53d2379019ab713fb798d319f0269330a6ffa134de1bfe2532d4e0",
    num_classes=10, input_size=(1, 28, 28), mean=_FM.mean, std=_FM.std, crop_pct=1.0,
    accuracy={"fashion_mnist_test_top1": 94.99, "fashion_mnist_test_top5": 99.97},
    params=399346, model_kwargs={"width": 0.25, "stem_stride": 1}, classes=_FM.classes,
    source="trained by this project: inceptionnet train --recipe fashion_mnist (docs/RESULTS.md); "
    "shipped inside the package",
))  # fmt: skip

# --------------------------------------------------------------------------------------------------
# Reading files safely


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_file(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint or state_dict file without running code from it.

    Raises ``FileNotFoundError`` or ``CheckpointError`` (one clear line) for missing, empty,
    truncated, foreign or unsafe files.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes); the file was not written completely")
    if _is_safetensors(p):
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot read safetensors file {p}: {_first_line(e)}") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if _bad_opcode(msg):  # bytes that are no pickle opcode: damaged or random data, not code
            raise CheckpointError(
                f"cannot read checkpoint {p}: the file is damaged or not a PyTorch checkpoint "
                f"({_unsafe_detail(msg)})"
            ) from None
        if "Weights only load failed" in msg or "Unsupported global" in msg or "Unsupported operand" in msg:
            raise CheckpointError(
                f"refusing unsafe checkpoint {p}: it contains pickled code or objects that are not "
                f"tensors ({_unsafe_detail(msg)}); only load files from sources you trust, and "
                "prefer .safetensors"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {p}: not a PyTorch checkpoint ({_first_line(e)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {p}: the file is truncated or not a PyTorch checkpoint "
            f"({_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _unsafe_detail(msg: str) -> str:
    for ln in msg.splitlines():
        low = ln.lower()
        if "unsupported global" in low or "unsupported operand" in low:
            return ln.replace("WeightsUnpickler error:", "").strip()[:160]
    return "weights_only load refused it"


def _bad_opcode(msg: str) -> bool:
    """Does torch's refusal name a byte that is no pickle opcode at all (a damaged or random file)?
    Opcodes that exist but the safe unpickler does not run (e.g. INST, OBJ) stay 'unsafe'."""
    import pickletools

    m = re.search(r"Unsupported operand (\d+)", msg)
    if m is None:
        return False
    codes = {op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    return int(m.group(1)) not in codes


def extract_state_dict(obj: Any, source: str = "checkpoint") -> StateDict:
    """The model state_dict inside a loaded file (bare, ``{"model": ...}``, ``{"state_dict": ...}``)."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} holds no model state_dict (expected a dict of tensors)")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):  # saved from DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if all(k.startswith("_orig_mod.") for k in sd):  # saved from torch.compile
        sd = {k[len("_orig_mod.") :]: v for k, v in sd.items()}
    return sd


# --------------------------------------------------------------------------------------------------
# Third-party key layouts: name -> (detector, remapper). Filled by the model families that need them.

KeyMap = Callable[[StateDict], StateDict]
KEY_MAPS: dict[str, tuple[str, Callable[[StateDict], bool], KeyMap]] = {}
# key map name -> weight entry tag whose architecture flags and input config the layout implies
KEY_MAP_ENTRIES: dict[str, str] = {}


def register_key_map(
    name: str,
    model: str,
    detect: Callable[[StateDict], bool],
    remap: KeyMap,
    *,
    entry: str | None = None,
) -> None:
    """Teach ``create_model(model, weights=file)`` a third-party layout: ``detect(sd)`` recognizes it,
    ``remap(sd)`` renames it to this project's keys; ``entry`` (a weight entry tag of ``model``)
    supplies the architecture flags and the input config (mean/std, BGR, 0-255) such files need."""
    KEY_MAPS[name] = (model, detect, remap)
    if entry is not None:
        KEY_MAP_ENTRIES[name] = entry


def detect_key_map(model_name: str, sd: StateDict) -> str | None:
    """Name of the third-party layout of ``sd`` for ``model_name``, or None (this project's keys)."""
    for name, (model, detect, _) in KEY_MAPS.items():
        if model == model_name and detect(sd):
            return name
    return None


def remap_foreign_keys(model_name: str, sd: StateDict) -> StateDict:
    for _, (model, detect, remap) in KEY_MAPS.items():
        if model == model_name and detect(sd):
            return remap(sd)
    return sd


# pretrainedmodels' ``bninception`` (the Caffe BN-Inception port) -> ``bn_inception``. Its keys are
# flat Caffe layer names: ``conv1_7x7_s2`` (conv) + ``conv1_7x7_s2_bn`` (BN) ->
# ``conv1.conv`` + ``conv1.bn``; ``conv2_3x3_reduce`` -> ``conv2``; ``conv2_3x3`` -> ``conv3``;
# ``inception_<block>_<part>[_bn]`` -> ``inception<block>.<branch>.{conv,bn}`` with the parts below;
# ``last_linear`` -> ``fc``. BN tensors stored as 1 x C (tsn-pytorch's copy of the port) become C.
_BNINCEPTION_STEM = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2", "conv2_3x3": "conv3"}
_BNINCEPTION_PARTS = {
    "1x1": "branch1x1",
    "3x3_reduce": "branch3x3_1",
    "3x3": "branch3x3_2",
    "double_3x3_reduce": "branch3x3dbl_1",
    "double_3x3_1": "branch3x3dbl_2",
    "double_3x3_2": "branch3x3dbl_3",
    "pool_proj": "branch_pool",
}
_BNINCEPTION_BLOCK = re.compile(r"inception_(\d[a-e])_(\w+)")


def _is_pretrainedmodels_bninception(sd: StateDict) -> bool:
    return "conv1_7x7_s2.weight" in sd and "inception_3a_1x1.weight" in sd


def remap_pretrainedmodels_bninception(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, v in sd.items():
        layer, _, param = key.rpartition(".")
        is_bn = layer.endswith("_bn")
        base = layer[: -len("_bn")] if is_bn else layer
        sub = "bn" if is_bn else "conv"
        m = _BNINCEPTION_BLOCK.fullmatch(base)
        if base == "last_linear":
            new = f"fc.{param}"
        elif base in _BNINCEPTION_STEM:
            new = f"{_BNINCEPTION_STEM[base]}.{sub}.{param}"
        elif m is not None and m.group(2) in _BNINCEPTION_PARTS:
            new = f"inception{m.group(1)}.{_BNINCEPTION_PARTS[m.group(2)]}.{sub}.{param}"
        else:
            new = key  # unknown: left as is, so fit_state_dict names it
        if is_bn and v.dim() == 2 and v.shape[0] == 1:
            v = v.reshape(-1)
        out[new] = v
    return out


# facenet-pytorch's ``InceptionResnetV1`` (FaceNet, David Sandberg's TF-slim model) ->
# ``inception_resnet_v1`` built with the flags of the ``vggface2`` entry (embed_dim=512,
# num_blocks=(5, 10, 6), slim_final_block=True). The stem, mixed_6a/7a, block8, last_linear and last_bn
# keep their names; the three block stacks are renumbered as in timm's Inception-ResNet-v2
# (repeat_1/2/3 -> repeat/repeat_1/repeat_2) and the classifier ``logits`` becomes ``classif``.
# With num_classes=0 the model returns facenet's L2-normalized 512-d embeddings.
_FACENET_PREFIXES = {
    "repeat_1.": "repeat.",
    "repeat_2.": "repeat_1.",
    "repeat_3.": "repeat_2.",
    "logits.": "classif.",
}


def _is_facenet_inception_resnet_v1(sd: StateDict) -> bool:
    return "repeat_3.0.conv2d.weight" in sd and "last_bn.running_var" in sd


def remap_facenet_inception_resnet_v1(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, v in sd.items():
        for old, new in _FACENET_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = v
    return out


register_key_map(
    "pretrainedmodels_bninception", "bn_inception", _is_pretrainedmodels_bninception,
    remap_pretrainedmodels_bninception, entry="imagenet_caffe",
)  # fmt: skip
register_key_map(
    "facenet_inception_resnet_v1", "inception_resnet_v1", _is_facenet_inception_resnet_v1,
    remap_facenet_inception_resnet_v1, entry="vggface2",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Fitting a state_dict to a model


def adapt_first_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Fit a first-conv weight to ``in_chans``: sum RGB into one channel, or repeat and rescale."""
    src = weight.shape[1]
    if src == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // src)
    w = weight.repeat(1, reps, 1, 1)[:, :in_chans]
    return w * (src / float(in_chans))


def fit_state_dict(model: nn.Module, sd: StateDict, *, source: str = "checkpoint") -> list[str]:
    """Load ``sd`` into ``model`` strictly, after adapting the first conv to the model's input
    channels and dropping classifier tensors whose shape does not fit (they keep their fresh init,
    with a warning unless ``num_classes=0``). Also accepted: a file without the classifier (fresh
    init, warning), tensors of aux heads the model was built without (``default_cfg["aux_modules"]``,
    skipped) and BatchNorm layers without ``num_batches_tracked`` (PyTorch < 0.4.1 files, set to 0).
    Returns the names of the re-initialized classifier tensors."""
    cfg: Mapping[str, Any] = getattr(model, "default_cfg", {}) or {}
    own = model.state_dict()
    sd = dict(sd)
    first = cfg.get("first_conv")
    if first and f"{first}.weight" in sd and f"{first}.weight" in own:
        key = f"{first}.weight"
        if sd[key].dim() == 4 and sd[key].shape[1] != own[key].shape[1]:
            sd[key] = adapt_first_conv(sd[key], own[key].shape[1])
    # tensors of aux heads the model was built without (e.g. torchvision's AuxLogits, aux_logits=False)
    aux_modules = tuple(cfg.get("aux_modules", ()))
    for k in [k for k in sd if k not in own and k.split(".", 1)[0] in aux_modules]:
        del sd[k]
    # checkpoints from PyTorch < 0.4.1 (e.g. Caffe ports) have no BatchNorm num_batches_tracked
    for k in own:
        if k.endswith(".num_batches_tracked") and k not in sd and k.rsplit(".", 1)[0] + ".running_mean" in sd:
            sd[k] = torch.zeros_like(own[k])
    heads = [cfg.get("classifier"), *cfg.get("aux_classifiers", ())]
    reset: list[str] = []
    for head in (h for h in heads if h):
        for suffix in ("weight", "bias"):
            key = f"{head}.{suffix}"
            if key in sd and (key not in own or sd[key].shape != own[key].shape):
                del sd[key]
                reset.append(key)
            elif key not in sd and key in own and any(k.startswith(f"{head}.") for k in reset):
                reset.append(key)
        head_in_file = any(k.startswith(f"{head}.") for k in sd)
        if not head_in_file and not any(k.startswith(f"{head}.") for k in reset):
            # a file without this classifier (saved with num_classes=0, or facenet's embedding model)
            reset += [k for k in own if k.startswith(f"{head}.")]
    missing = [k for k in own if k not in sd and k not in reset]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{source} does not fit model {type(model).__name__}: {'; '.join(parts)}; "
            "is it a checkpoint of another model or configuration?"
        )
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{source} does not fit the model: tensor {k} has shape {tuple(v.shape)} in the file "
                f"but {tuple(own[k].shape)} in the model; check the model name and its flags (width, in_chans, ...)"
            )
    model.load_state_dict(sd, strict=False)
    if reset and getattr(model, "num_classes", None) != 0:  # num_classes=0: the head is dropped on purpose
        heads_reset = sorted({k.rsplit(".", 1)[0] for k in reset})
        warnings.warn(
            f"classifier {', '.join(heads_reset)} re-initialized for {getattr(model, 'num_classes', '?')} "
            "classes (the weights have another number of classes, or no classifier); fine-tune it before use",
            stacklevel=3,
        )
    return reset


# --------------------------------------------------------------------------------------------------
# Fetching entries


def _package_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


def entry_path(entry: WeightEntry) -> Path:
    """Where the entry's file is (inside the package, or torch.hub's cache); downloads when needed."""
    if entry.url is None:
        return _package_weights_dir() / entry.filename
    cache = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    if cache.exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(entry.url, str(cache), progress=True)
    except Exception as e:  # no network here is the common case
        raise FileNotFoundError(
            f"cannot download weights {entry.model}.{entry.tag} from {entry.url} ({_first_line(e)}); "
            f"without a network, put the file at {cache}"
        ) from None
    return cache


def verify_sha256(path: Path, expected: str | None) -> None:
    if not expected:
        return
    digest = sha256_of(path)
    if not digest.startswith(expected.lower()):
        raise CheckpointError(
            f"sha256 of {path} is {digest[:16]}..., expected {expected[:16]}...: the file is corrupt or "
            "not these weights; delete it and fetch it again"
        )


def build_with_weights(
    name: str,
    builder: Callable[..., nn.Module],
    weights: str,
    *,
    num_classes: int,
    in_chans: int,
    **kwargs: Any,
) -> InceptionBase:
    """``create_model(name, weights=...)``: a weight entry tag or a local file."""
    entry = get_weight_entry(name, weights)
    model_kwargs: dict[str, Any] = {}
    classes: tuple[str, ...] | None = None
    if entry is not None:
        path = entry_path(entry)
        verify_sha256(path, entry.sha256)
        model_kwargs.update(entry.model_kwargs)
        classes = entry.classes
        source = f"weights {name}.{weights}"
    else:
        path = Path(weights)
        if not path.exists():
            tags = list_weights(name)
            known = (
                f"; weight entries of {name}: {', '.join(tags)}"
                if tags
                else f"; {name} has no weight entries"
            )
            raise FileNotFoundError(f"weights {weights!r} is neither a file nor a weight entry{known}")
        source = f"checkpoint {path}"
    obj = load_file(path)
    if isinstance(obj, Mapping):
        saved_name = obj.get("model_name")
        if isinstance(saved_name, str) and saved_name != name:
            raise CheckpointError(
                f"{source} is a {saved_name} checkpoint, not {name}; use --model {saved_name}"
            )
        if isinstance(obj.get("model_kwargs"), Mapping):
            model_kwargs.update(obj["model_kwargs"])
        if classes is None and isinstance(obj.get("classes"), list | tuple):
            classes = tuple(str(c) for c in obj["classes"])
    sd = extract_state_dict(obj, source)
    layout = detect_key_map(name, sd)
    if entry is None and layout in KEY_MAP_ENTRIES:
        # a third-party file (e.g. pretrainedmodels, facenet): its entry says how to build and feed it
        entry = get_weight_entry(name, KEY_MAP_ENTRIES[layout])
        if entry is not None:
            model_kwargs = {**entry.model_kwargs, **model_kwargs}
    model_kwargs.update(kwargs)
    model = builder(num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    assert isinstance(model, InceptionBase)
    sd = remap_foreign_keys(name, sd)
    fit_state_dict(model, sd, source=source)
    cfg = dict(model.default_cfg)
    if entry is not None:
        same = in_chans == entry.input_size[0]  # else: the weights' statistics averaged over channels
        cfg.update(
            mean=entry.mean if same else (sum(entry.mean) / len(entry.mean),) * in_chans,
            std=entry.std if same else (sum(entry.std) / len(entry.std),) * in_chans,
            input_size=(in_chans, *entry.input_size[1:]),
            interpolation=entry.interpolation, crop_pct=entry.crop_pct,
            input_space=entry.input_space, input_range=entry.input_range,
        )  # fmt: skip
    if classes is not None and len(classes) == num_classes:
        cfg["classes"] = classes
    cfg["weights"] = weights
    model.default_cfg = cfg
    return model
