"""Several machines, one run: a run directory on a file system they share, or one on each machine's own disk.

Global rank 0 alone writes the run (recipe, metrics, model, summary, checkpoints). Each process also keeps its
own random state (and stream position) in every checkpoint, so each must write where it can read it back: a
process that sees rank 0's run directory writes there; on a machine that does not (its own local disk), the
machine's first process keeps a copy of the checkpoints — and of recipe.yaml and run.json, which ``--resume``
reads — in the same path on that disk. Nothing else is written there.

Whether a process sees rank 0's directory is tested, not assumed: rank 0 sends the content of the lock file it
holds in the run directory, and each process compares it with the file at that path on its own machine.
On resume, every machine must hold the checkpoint the run continues from: the newest step all of them have.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError
from deitctl.records.rundir import LOCK

if TYPE_CHECKING:
    from accelerate import Accelerator

    from deitctl.training.plan import Plan


def sees_main_run_dir(plan: Plan, accel: Accelerator) -> bool:
    """Whether this process sees the run directory rank 0 writes (the same file system at that path)."""
    if accel.num_processes == 1:
        return True
    from accelerate.utils import broadcast_object_list

    lock = plan.run.path / LOCK
    holder = [lock.read_text() if accel.is_main_process else None]
    broadcast_object_list(holder, from_process=0)
    return accel.is_main_process or (lock.is_file() and lock.read_text() == holder[0])


def keep_local_copy(plan: Plan, accel: Accelerator, sees_main: bool) -> bool:
    """Whether this process writes checkpoints (rank 0, or the first process of a machine with its own disk);
    such a machine's copy of the run gets the recipe and options ``--resume`` reads. A fresh run sets an older
    run found at that path aside (never deleted), as ``--overwrite`` does on rank 0."""
    if accel.is_main_process:
        return True
    if sees_main or not accel.is_local_main_process:
        return False
    if plan.resume_from is None and plan.run.holds_run():
        plan.run.set_aside()
    if plan.resume_from is None:
        from deitctl.training.plan import record_run

        record_run(plan.run, plan.recipe, plan.options)
    return True


def common_checkpoint(plan: Plan, accel: Accelerator) -> Path | None:
    """The checkpoint to resume from: the newest step every process can read (each machine's disk may differ)."""
    from deitctl.training import checkpoint

    if plan.resume_from is None or accel.num_processes == 1:
        return plan.resume_from
    from accelerate.utils import gather_object

    steps = gather_object([sorted(checkpoint.complete_steps(plan.run))])
    common = set.intersection(*(set(s) for s in steps))
    if not common:
        raise UsageError(f"{plan.run.path}: no checkpoint that every machine holds (steps per process: "
                         f"{', '.join(str(s[-1:]) for s in steps)}); copy one checkpoint directory to every machine's "
                         "run directory, then resume")
    return plan.run.checkpoints / f"step-{max(common):07d}"
