"""The learning-rate schedule: a pure function of the optimizer step, as in nanoGPT."""

from __future__ import annotations

import math

from deitctl.config.recipe import Recipe


def lr_at(step: int, total: int, warmup: int, recipe: Recipe, peak: float) -> float:
    """Linear warmup from warmup_lr, then cosine down to min_lr (or constant at the peak)."""
    if step < warmup:
        return recipe.warmup_lr + (peak - recipe.warmup_lr) * step / warmup
    if recipe.scheduler == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return recipe.min_lr + 0.5 * (peak - recipe.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))
