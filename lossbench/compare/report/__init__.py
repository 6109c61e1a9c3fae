"""Stage 4: the report (markdown, plots, sections), rendered from a results folder alone."""
