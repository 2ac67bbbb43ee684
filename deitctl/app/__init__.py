"""Layer 9: one module per command — ``run(request) -> result``; no parsing, no printing of results."""
