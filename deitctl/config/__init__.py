"""Layer 1: recipes — the schema of a training run and the YAML files, bases and overrides that fill it."""
