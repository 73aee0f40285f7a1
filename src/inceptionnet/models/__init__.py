"""The model families and what builds them. Importing this package registers every model.

_registry.py   the leaf registry (register_model, list_models)
_weights.py    weight entries and third-party key layouts (filled by the families)
_builder.py    create_model (features_only=True: a feature extractor), fit_state_dict
layers.py      shared layers and InceptionBase (the timm model API)
_features.py   the backbone API from each model's declared stages: FeatureInfo, feature extractors,
               forward_intermediates' index rules, gradient checkpointing
<family>.py    one file per family, written out as in the paper, with its weight entries
"""

from . import bn_inception, googlenet, inception_resnet, inception_v3, inception_v4  # noqa: F401
from ._builder import create_model, fit_state_dict
from ._features import FeatureInfo, feature_take_indices
from ._registry import get_model_builder, list_models, parse_model_kwargs, register_model
from ._weights import get_weight_entry, list_weights
from .layers import InceptionBase, ModelOutput

__all__ = [
    "FeatureInfo",
    "InceptionBase",
    "ModelOutput",
    "create_model",
    "feature_take_indices",
    "fit_state_dict",
    "get_model_builder",
    "get_weight_entry",
    "list_models",
    "list_weights",
    "parse_model_kwargs",
    "register_model",
]
