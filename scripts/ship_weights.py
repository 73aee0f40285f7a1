"""Turn a training run's best.pt into the weight file shipped inside the package.

    python scripts/ship_weights.py runs/fashion_mnist/best.pt fashion_mnist [--half]

Writes src/inceptionnet/weights/<model>-<tag>-<sha256[:8]>.safetensors (the state_dict plus the
run's model name, model kwargs, classes and data config as safetensors metadata) and prints the
file name and full sha256 to put in the weight entry (src/inceptionnet/models/googlenet.py, its weights section).
``--half`` stores the floating tensors as float16 (half the size, for the package's 10 MB limit);
loading casts them back into the model's float32 parameters. Check the accuracy after shipping.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from inceptionnet.fileio import atomic_write, sha256_of
from inceptionnet.train.state import load_checkpoint


def main(ckpt_path: str, tag: str, half: bool = False) -> None:
    ckpt = load_checkpoint(ckpt_path)
    dtype = torch.float16 if half else torch.float32
    sd = {k: v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous()
          for k, v in ckpt["model"].items()}  # fmt: skip
    meta = {
        "model_name": ckpt["model_name"],
        "model_kwargs": json.dumps(ckpt.get("model_kwargs") or {}),
        "classes": json.dumps(list(ckpt.get("classes") or [])),
        "data_cfg": json.dumps(ckpt.get("data_cfg") or {}),
        "epoch": str(ckpt["epoch"]),
        "weights_from": str(ckpt.get("weights_from", "model")),
        "dtype": str(dtype).removeprefix("torch."),
    }
    out_dir = Path(__file__).resolve().parents[1] / "src" / "inceptionnet" / "weights"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{tag}.tmp.safetensors"
    atomic_write(tmp, lambda p: save_file(sd, p, metadata=meta))
    digest = sha256_of(tmp)
    final = out_dir / f"{ckpt['model_name']}-{tag}-{digest[:8]}.safetensors"
    tmp.replace(final)
    final.chmod(0o644)
    print(f"{final.name}\n{digest}\n{final.stat().st_size / 1e6:.2f} MB, metadata {meta}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], half="--half" in sys.argv[3:])
