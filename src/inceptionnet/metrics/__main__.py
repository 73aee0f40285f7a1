"""``python -m inceptionnet.metrics fid|isc ...`` and, sharded over processes,
``torchrun --nproc-per-node N -m inceptionnet.metrics fid A B ...``: each rank reads its part of
each folder's sorted file list, the features are gathered in file order and rank 0 prints."""

import sys

from ..commands import run

NAMES = ("fid", "isc")

if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
    print(f"usage: python -m inceptionnet.metrics {{{','.join(NAMES)}}} ...", file=sys.stderr)
    sys.exit(2)
sys.exit(run(sys.argv[1], sys.argv[2:], prog=f"python -m inceptionnet.metrics {sys.argv[1]}"))
