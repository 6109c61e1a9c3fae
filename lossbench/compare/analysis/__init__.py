"""Stage 3: pure functions over run records.

Summaries, curves, statistics, significance, calibration, fairness, tuning choices.
"""

from lossbench._extras import require

require("compare", __name__)  # a light install (no `compare` extra) is told so in one line, not by a traceback
