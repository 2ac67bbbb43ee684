"""Layer 6: what a run leaves behind — the run directory, its log and plots, the model card, the report."""
