"""Stage 1: a recipe, parsed and checked before anything is written (schema, bounded YAML, tune and teacher
sections)."""
