"""The Inception family of image classifiers in PyTorch.

>>> import inceptionnet
>>> m = inceptionnet.create_model("googlenet", num_classes=10)

Importing the package loads nothing heavy: the models (and torch), the deployment path
(``optimize_for_inference``), the trainer and the commands load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, DataNotFoundError, ImageReadError, InceptionNetError, InputShapeError

if TYPE_CHECKING:
    from .deploy.fast import optimize_for_inference
    from .models import ModelOutput, create_model, list_models, list_weights, register_model

__version__ = "0.1.0"

# name -> module: loaded on first use, so `import inceptionnet` costs nothing and a deployment path
# (`predict --onnx`) never loads the model code; the fast path pulls in torch.fx and the exporters
_LAZY = {
    "ModelOutput": "inceptionnet.models",
    "create_model": "inceptionnet.models",
    "list_models": "inceptionnet.models",
    "list_weights": "inceptionnet.models",
    "register_model": "inceptionnet.models",
    "optimize_for_inference": "inceptionnet.deploy.fast",
}

__all__ = [
    "CheckpointError",
    "DataNotFoundError",
    "ImageReadError",
    "InceptionNetError",
    "InputShapeError",
    "ModelOutput",
    "__version__",
    "create_model",
    "list_models",
    "list_weights",
    "optimize_for_inference",
    "register_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'inceptionnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
