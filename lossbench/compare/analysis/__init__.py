"""Stage 3: pure functions over run records.

Summaries, curves, statistics, significance, calibration, fairness, tuning choices.
"""
