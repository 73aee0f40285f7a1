"""``python -m inceptionnet COMMAND ...`` is ``inceptionnet COMMAND ...``."""

import sys

from .cli import main

sys.exit(main())
