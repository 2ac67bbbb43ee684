"""Resumable checkpoints: everything needed to continue a run at the exact optimizer step.

A checkpoint is a directory ``RUN/checkpoints/step-000123/`` holding the weights (safetensors),
the optimizer / scaler / EMA state and the trainer's position (``state.pt``), and one RNG file per
process. It is written under a temporary name and renamed when complete; ``RUN/checkpoints/latest``
names the newest complete one. Everything is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from deitctl.core.atomic import DiskFullError, disk_full_guard, fsync_path, fsync_tree, write_text
from deitctl.records.rundir import RunDir
from deitctl.runtime.rng import rng_state

KEEP = 2  # complete checkpoints kept; older ones are removed only after a newer one is in place


def save(run: RunDir, step: int, model_state: dict[str, torch.Tensor], state: dict[str, Any],
         rank: int, writer: bool, barrier: Any, position: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` (all ranks call this; ``barrier`` synchronises them).

    ``writer``: this process writes the weights and trainer state and moves ``latest`` — rank 0, and the first
    process of a machine that does not see rank 0's run directory (``training.nodes``); every process writes
    its own random state (and stream position) into the checkpoint directory it sees.

    Durable before it counts: every file and the directory are fsynced, the directory is renamed into
    place (and its parent fsynced), and only then does ``latest`` move. Killed at any moment, the run
    resumes from a complete checkpoint; out of space, it stops with the last complete one kept.
    """
    from safetensors.torch import save_file

    root = run.checkpoints
    final, tmp = root / f"step-{step:07d}", root / f".tmp-step-{step:07d}"
    hint = (f"the last complete checkpoint is kept in {root}; free space, then "
            f"`deitctl train --resume {run.path}`")
    try:
        with disk_full_guard(tmp, _nbytes(model_state) + _nbytes(state), partial=tmp, hint=hint):
            if writer:
                for stale in root.glob(".tmp-step-*"):  # left by a run killed mid-write
                    shutil.rmtree(stale, ignore_errors=True)
                tmp.mkdir(parents=True)
            barrier()
            torch.save(rng_state(), tmp / f"rng-{rank}.pt")
            if position is not None:  # where this process's data stream stands
                torch.save(position, tmp / f"stream-{rank}.pt")
            if writer:
                save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                          str(tmp / "model.safetensors"))
                torch.save(state, tmp / "state.pt")
            barrier()
            if writer:
                fsync_tree(tmp)
    except DiskFullError:
        if writer:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if writer:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        fsync_path(root)
        write_text(root / "latest", final.name + "\n", durable=True)
        for old in sorted(root.glob("step-*"))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state: what the checkpoint will take on disk, near enough."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def complete_steps(run: RunDir) -> list[int]:
    """The steps of the complete checkpoints in the run (a killed write leaves only a ``.tmp-`` directory)."""
    return [int(p.name.split("-")[1]) for p in run.checkpoints.glob("step-*")
            if (p / "state.pt").is_file() and (p / "model.safetensors").is_file()]


def latest(run: RunDir) -> Path | None:
    pointer = run.checkpoints / "latest"
    if not pointer.is_file():
        return None
    path = run.checkpoints / pointer.read_text().strip()
    return path if (path / "state.pt").is_file() and (path / "model.safetensors").is_file() else None


def load(path: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None,
                                         dict[str, Any] | None]:
    """Weights, trainer state, this rank's RNG state (restore it just before the next step) and, for a streamed
    run, this rank's stream position."""
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    rng_file = path / f"rng-{rank}.pt"
    rng = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.is_file() else None
    stream_file = path / f"stream-{rank}.pt"
    position = torch.load(stream_file, weights_only=True) if stream_file.is_file() else None
    return weights, state, rng, position
