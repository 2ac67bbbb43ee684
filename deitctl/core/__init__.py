"""Layer 0: what every other layer may use — user-facing errors, atomic file writes, the console."""
