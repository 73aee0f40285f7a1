"""``make demo``: list the models and run each GoogLeNet variant on a batch."""

from __future__ import annotations

import sys

import torch

from . import create_model, list_models


def main() -> int:
    torch.manual_seed(0)
    print("models:", ", ".join(list_models()))
    for name, size, kwargs in [
        ("googlenet", 224, {"aux_logits": True}),
        ("googlenet_paper", 224, {}),
        ("googlenet_small", 28, {"in_chans": 1, "num_classes": 10, "width": 0.25}),
    ]:
        m = create_model(name, **kwargs).eval()
        x = torch.randn(2, m.in_chans, size, size)
        with torch.no_grad():
            out = m(x, return_aux=True)
        params = sum(p.numel() for p in m.parameters())
        print(
            f"{name:<16} params {params:>11,}  input {tuple(x.shape)} -> logits {tuple(out.logits.shape)}"
            f", {len(out.aux)} aux heads"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
