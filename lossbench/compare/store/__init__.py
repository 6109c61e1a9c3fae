"""Stage 2: the results-folder format (layout, records, comparison.json, tensors, lock, confinement): what any
process reads and writes."""
