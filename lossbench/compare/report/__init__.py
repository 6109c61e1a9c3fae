"""Stage 4: the report (markdown, plots, sections), rendered from a results folder alone."""

from lossbench._extras import require

require("compare", __name__)  # a light install (no `compare` extra) is told so in one line, not by a traceback
