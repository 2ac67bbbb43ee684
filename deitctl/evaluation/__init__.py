"""Layer 7: measuring a model — the metric loop (accuracy, loss, each head) and forward-pass timing."""
