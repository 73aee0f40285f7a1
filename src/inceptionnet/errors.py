"""Project exceptions. Each is also a ValueError/FileNotFoundError so plain `except` clauses work."""


class InceptionNetError(Exception):
    """Base class of the errors the CLI prints as one `error: ...` line."""


class InputShapeError(InceptionNetError, ValueError):
    """A tensor the network cannot take (dims, channels, size)."""


class CheckpointError(InceptionNetError, ValueError):
    """A checkpoint or weight file that is damaged, foreign, unsafe or does not fit the model."""


class DataNotFoundError(InceptionNetError, FileNotFoundError):
    """A data set that is not where we looked."""


class ImageReadError(InceptionNetError, ValueError):
    """A file that is not a readable image."""


class OutputWriteError(InceptionNetError, OSError):
    """An output that could not be written (disk full, read-only folder); the previous file is kept."""
