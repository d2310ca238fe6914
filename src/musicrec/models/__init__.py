"""Models: one file per model; ``registry.MODELS`` lists them all."""
