"""Model families; importing this package registers every model."""

from . import bn_inception, googlenet, inception_resnet, inception_v3, inception_v4  # noqa: F401
