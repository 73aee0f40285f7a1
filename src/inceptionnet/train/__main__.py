"""``python -m inceptionnet.train`` and ``torchrun -m inceptionnet.train``."""

import sys

from . import cli

sys.exit(cli())
