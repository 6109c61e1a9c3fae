"""Stage 5: running a comparison (the engine, the run lifecycle, the fused array, tuning and teacher runs,
recompute)."""
