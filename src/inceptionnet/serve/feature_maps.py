"""The page's "Feature maps" view: one layer's channels for an uploaded image, as a grid picture.

    GET  /v1/feature_maps/layers  {"model", "layers": the names POST takes (forward order), "default"};
                                  an ONNX model (no PyTorch module to hook) has none
    POST /v1/feature_maps         one image (multipart ``file`` or JSON ``{"image": b64}``, as
                                  /v1/explain, with the same upload and size checks) and ``layer`` ->
                                  ``image/png``: the layer's channels tiled, each scaled to its own
                                  range (``analysis.feature_maps``), white 1-px gaps, gray; header
                                  ``X-Feature-Maps-Shape: C x H x W`` of the layer's output

An unknown or missing ``layer`` is a 400 naming the valid ones; an ONNX model a 409.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from ..analysis.feature_maps import feature_layer_names
from ..errors import excerpt
from .app import ServeConfig, explaining, one_image
from .auth import require_key
from .engine import Engine
from .explain import default_layer, layer_grid, png_bytes

SHAPE_HEADER = "X-Feature-Maps-Shape"


def _layer(options: dict[str, Any], valid: list[str]) -> str:
    name = str(options.get("layer", "")).strip()
    if name not in valid:
        said = f"{excerpt(name)} is not a layer of this model" if name else "no layer given"
        raise HTTPException(
            400, f"{said}: send field 'layer', one of {', '.join(valid)} (GET /v1/feature_maps/layers)"
        )
    return name


def add_feature_maps(app: FastAPI, engine: Engine, cfg: ServeConfig, state: dict[str, Any]) -> None:
    layers = feature_layer_names(engine.model) if engine.model is not None else []

    @app.get("/v1/feature_maps/layers", dependencies=[Depends(require_key)])
    async def layer_names() -> dict[str, Any]:
        default = default_layer(engine.model) if engine.model is not None else None
        return {"model": engine.name, "layers": layers, "default": default}

    @app.post("/v1/feature_maps", dependencies=[Depends(require_key)])
    async def grid(request: Request) -> Response:
        _, x, options = await one_image(request, engine, cfg, "/v1/feature_maps")
        layer = _layer(options, layers)
        r = await explaining(state, cfg, "feature maps", layer_grid, engine.model, x, layer)
        pic = (r.grid * 255).round().astype(np.uint8)
        c, h, w = r.maps.shape
        return Response(png_bytes(pic), media_type="image/png", headers={SHAPE_HEADER: f"{c} x {h} x {w}"})
