"""The Inception family of image classifiers in PyTorch.

>>> import inceptionnet
>>> m = inceptionnet.create_model("googlenet", num_classes=10)
"""

from .errors import CheckpointError, DataNotFoundError, ImageReadError, InceptionNetError, InputShapeError
from .fast import optimize_for_inference
from .layers import ModelOutput
from .registry import create_model, list_models, register_model
from .weights import list_weights

__version__ = "0.1.0"

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
