"""Paired statistics over per-image predictions on the same test images.

Two classifiers evaluated on the same images are compared pairwise, not by their accuracies alone:
the exact McNemar test looks only at the images on which exactly one of them is right (b and c),
and asks how likely so lopsided a split is if both were equally good (a fair coin, n = b + c).
The disagreement is the paper's Table 4 measure: the fraction of images on which two decisions differ.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, ½), capped at 1."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    # sum the binomial tail in log space: n can be thousands, and 0.5**n underflows past ~1,075
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2.0 * tail)


def discordant(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(b, c): images only ``a`` gets right, images only ``b`` gets right."""
    right_a, right_b = pred_a == labels, pred_b == labels
    return int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())


def paired_p_value(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> float:
    return mcnemar_exact(*discordant(pred_a, pred_b, labels))


def disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images on which the two decisions differ (Table 4 of the paper)."""
    return float((pred_a != pred_b).mean()) if len(pred_a) else 0.0
