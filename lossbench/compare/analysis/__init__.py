"""Stage 3: pure functions over run records (summaries, curves, statistics, significance, calibration, fairness, tuning choices)."""
