"""Stage 5: running a comparison (the engine, the run lifecycle, the fused array, tuning and teacher runs,
recompute)."""

from lossbench._extras import require

require("compare", __name__)  # a light install (no `compare` extra) is told so in one line, not by a traceback
