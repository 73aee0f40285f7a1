"""Model families; importing this package registers every model."""

from . import googlenet  # noqa: F401
