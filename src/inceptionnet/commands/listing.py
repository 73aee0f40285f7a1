"""``inceptionnet list``: the registered models, their parameter counts and weight entries."""

from __future__ import annotations

import argparse

import torch

from ..errors import UsageError
from ..fileio import json_text
from ..models import create_model, list_models, list_weights


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="List the registered models.", add_help=add_help)
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'inception*'")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size for the counts")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def count_params(model: object) -> int:
    return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]


def main(args: argparse.Namespace) -> int:
    if args.num_classes < 0:
        raise UsageError(f"--num-classes must not be negative, got {args.num_classes}")
    if not args.pattern.strip():
        raise UsageError("the pattern is empty; leave it out to list every model")
    names = list_models(args.pattern)
    if not names:
        raise UsageError(
            f"no model matches {args.pattern!r}; patterns are shell-style, e.g. 'inception*' "
            f"(models: {', '.join(list_models())})"
        )
    rows = []
    for name in names:
        # built on the meta device: counting parameters needs no memory and no init
        with torch.device("meta"):
            m = create_model(name, num_classes=args.num_classes)
            has_aux = hasattr(m, "aux_logits")
            plain = create_model(name, num_classes=args.num_classes, aux_logits=False) if has_aux else m
            aux = create_model(name, num_classes=args.num_classes, aux_logits=True) if has_aux else None
        rows.append(
            {
                "model": name,
                "params": count_params(plain),
                "params_with_aux": count_params(aux) if aux is not None else None,
                "input_size": list(m.default_cfg["input_size"]),  # type: ignore[call-overload]
                "weights": list_weights(name),
            }
        )
    if args.json:
        print(json_text(rows))
        return 0
    print(f"{'model':<22} {'params':>12} {'with aux':>12}  {'input':<12} weights")
    for r in rows:
        aux_s = f"{r['params_with_aux']:,}" if r["params_with_aux"] is not None else "-"
        size = "x".join(str(s) for s in r["input_size"][1:])  # type: ignore[index]
        print(f"{r['model']:<22} {r['params']:>12,} {aux_s:>12}  {size:<12} {', '.join(r['weights']) or '-'}")  # type: ignore[arg-type]
    return 0
