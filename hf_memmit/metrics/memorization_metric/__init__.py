"""The `evaluate` metric script; `memorization.py` is also what `evaluate.load(MEMORIZATION_METRIC_PATH)` copies."""
