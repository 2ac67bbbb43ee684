"""The process's random state — Python, NumPy, torch (and CUDA) — as one value to save, restore or seed.

A resumed run must draw exactly the numbers the uninterrupted one drew: checkpoints save this state,
warm-up steps and sample augmentation restore it afterwards, so they leave no trace in the run.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def rng_state(cuda: bool = True) -> dict[str, Any]:
    """Everything that draws random numbers in a training process, as tensors and plain values
    (so ``torch.load(weights_only=True)`` reads it back); ``cuda=False`` leaves the GPUs' out."""
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss), "kind": kind},
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch's CPU generator (not ``torch.manual_seed``: that queues CUDA seeding per call)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def preserved_rng(cuda: bool = True) -> Iterator[None]:
    """Draw random numbers inside the block without changing what the process draws after it."""
    state = rng_state(cuda)
    try:
        yield
    finally:
        set_rng_state(state)
