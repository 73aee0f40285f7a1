"""Per-layer analysis of a model: the summary (shapes, params, MACs in forward order), the paper's
Table 1 and what the 1x1 reductions save. Generic over the models: a family declares what its
tables need as plain data beside it (``ANALYSIS_HINTS`` in ``models/<family>.py``, see ``hints``).

summary.py     summarize (the --format json dict) and render (text, markdown, csv, json)
table1.py      table1 / render_table1: a model as its paper's Table 1, published figures beside ours
bottleneck.py  bottleneck / render_bottleneck / bottleneck_example: the 1x1 reductions of each block
hints.py       reads the families' ANALYSIS_HINTS
feature_maps.py  feature_maps / feature_map_figure: a layer's channels as a grid picture
hooks.py       capture_outputs: modules' outputs during one forward (feature maps, the branch view)
_measure.py    rows, one traced forward pass (FlopCounterMode), counts | _text.py  the table formats
"""

from ._text import FORMATS
from .bottleneck import bottleneck, bottleneck_example, render_bottleneck
from .summary import render, summarize
from .table1 import render_table1, table1

__all__ = [
    "FORMATS",
    "bottleneck",
    "bottleneck_example",
    "render",
    "render_bottleneck",
    "render_table1",
    "summarize",
    "table1",
]
