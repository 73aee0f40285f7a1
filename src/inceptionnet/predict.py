"""``python -m inceptionnet.predict ...`` is ``inceptionnet predict ...``; sharded over processes,
``torchrun --nproc-per-node N -m inceptionnet.predict ... -o preds.csv``: rank r predicts inputs
i % N == r, and rank 0 writes one output in input order (``inceptionnet.pipeline``)."""

import sys

from .commands import run

if __name__ == "__main__":
    sys.exit(run("predict", sys.argv[1:], prog="python -m inceptionnet.predict"))
