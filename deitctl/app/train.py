"""``deitctl train`` / ``deitctl finetune``: plan the run, then the loop (``deitctl.training.loop``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deitctl.training.plan import RunOptions, finetune_recipe


@dataclass
class TrainRequest:
    recipe: str | None  # a recipe name or .yaml path; finetune may leave it to the dataset's transfer recipe
    options: RunOptions = field(default_factory=RunOptions)
    finetune: bool = False
    on_step: Any = None  # deitctl.training.loop.StepHook: sees each micro-batch's loss (tests inject faults here)


def run(req: TrainRequest) -> dict[str, Any]:
    """Train (or resume, or fine-tune); returns the run's summary."""
    from deitctl.training.plan import plan_run

    recipe = finetune_recipe(req.recipe, req.options.dataset) if req.finetune else req.recipe
    plan = plan_run(recipe or "", req.options)  # bad input and an unreachable Hub fail here, before torch loads
    try:
        from deitctl.training.loop import train

        return train(plan, on_step=req.on_step)
    finally:
        plan.release()
