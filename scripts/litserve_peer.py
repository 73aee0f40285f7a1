"""The load test's peer (docs/SERVING.md): LitServe serving the same model, with LitServe's own batching.

    .venv/bin/python scripts/litserve_peer.py --model googlenet_small --weights fashion_mnist --port 8100

``POST /predict`` with JSON ``{"image": "<base64>"}`` (the body /v1/predict also takes) -> the top-5 as
/v1/predict gives them. The work per image is ours, so only the serving differs: the image is decoded by
``Engine.decode`` (the same reader, header checks and transform), the batch runs through
``Engine.probabilities`` (the same fast path, ``--backend``); LitServe groups requests into batches of up
to ``--max-batch-size``, waiting ``--batch-timeout`` seconds (LitServe's ``max_batch_size`` /
``batch_timeout``; the defaults match ``serve --max-batch 32 --max-wait-ms 5``). ``GET /health`` is 200
once the model is set up. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
from typing import Any

import litserve as ls
import torch


class InceptionAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(
        self, model: str, weights: str, backend: str, max_batch_size: int, batch_timeout: float
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_name, self.weights, self.backend = model, weights, backend

    def setup(self, device: str) -> None:
        from inceptionnet.serve.engine import load_engine

        self.engine = load_engine(
            model_name=self.model_name,
            weights=self.weights,
            backend=self.backend,
            max_batch=self.max_batch_size,
        )

    # no annotation on ``request``: LitServe reads it to choose the parsing (none: the JSON body as a dict)
    def decode_request(self, request) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return self.engine.decode(base64.b64decode(request["image"]), "image")

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine.probabilities(x)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, probs: torch.Tensor) -> dict[str, Any]:
        from inceptionnet.serve.app import top_rows

        return {"model": self.engine.name, "top": top_rows(probs, self.engine.classes, 5)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="googlenet_small")
    p.add_argument("--weights", default="fashion_mnist", help="a weight entry or a weights file")
    p.add_argument("--backend", default="eager", help="the fast path's backend (default eager)")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--max-batch-size", type=int, default=32, help="LitServe's max_batch_size (default 32)")
    p.add_argument(
        "--batch-timeout", type=float, default=0.005, help="LitServe's batch_timeout, s (default 0.005)"
    )
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    api = InceptionAPI(args.model, args.weights, args.backend, args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=60)
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=1,
        log_level=args.log_level,
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
