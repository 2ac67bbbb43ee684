"""Resumable checkpoints: everything needed to continue a run at the exact optimizer step.

A checkpoint is a directory ``RUN/checkpoints/step-000123/`` holding the weights (safetensors),
the optimizer / scaler / EMA state and the trainer's position (``state.pt``), and one RNG file per
process. It is written under a temporary name and renamed when complete; ``RUN/checkpoints/latest``
names the newest complete one. Everything is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deitctl.atomic import write_text

KEEP = 2  # complete checkpoints kept; older ones are removed only after a newer one is in place


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss), "kind": kind},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
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


def save(run_dir: Path, step: int, model_state: dict[str, torch.Tensor], state: dict[str, Any],
         rank: int, is_main: bool, barrier: Any) -> Path:
    """Write checkpoint ``step`` (all ranks call this; ``barrier`` synchronises them)."""
    from safetensors.torch import save_file

    root = run_dir / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    if is_main:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
    barrier()
    if is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(root / "latest", final.name + "\n")
        for old in sorted(root.glob("step-*"))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def latest(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.pt").is_file() else None


def load(path: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Weights, trainer state and this rank's RNG state (restore it just before the next step)."""
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    rng_file = path / f"rng-{rank}.pt"
    rng = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.is_file() else None
    return weights, state, rng
