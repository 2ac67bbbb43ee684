"""Everything decided before the first step: the resolved recipe, the run directory, the batch plan.

Kept apart from the loop so ``train.py`` reads as the loop alone, and so these rules (flag → recipe
key, never clobber a run, how the global batch splits over processes) are testable on their own.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.atomic import write_text
from deitctl.errors import UsageError
from deitctl.recipes import Recipe, dump_recipe, is_recipe, load_recipe

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class RunOptions:
    """Command-line choices that are not recipe keys (those go through ``sets``)."""

    out: Path | None = None
    sets: list[str] = field(default_factory=list)
    dataset: str | None = None
    teacher: str | None = None
    init_from: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    per_device_batch: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    image_column: str | None = None
    label_column: str | None = None
    resume: Path | None = None
    overwrite: bool = False
    cpu: bool = False
    precision: str | None = None
    no_compile: bool = False

    def recipe_overrides(self) -> list[str]:
        flags = {"dataset": self.dataset, "teacher": self.teacher, "init_from": self.init_from,
                 "epochs": self.epochs, "batch_size": self.batch_size, "img_size": self.img_size,
                 "precision": self.precision}
        off = ["compile=false", "compile_student=false"] if self.no_compile else []
        return [*self.sets, *(f"{k}={v}" for k, v in flags.items() if v is not None), *off]


_RUN_FILE = "run.json"  # the RunOptions that shape the data (sample caps, columns), for --resume


def resolve_run(recipe_ref: str, opts: RunOptions) -> tuple[Recipe, Path, Path | None]:
    """(recipe, run directory, checkpoint to resume from or None); creates the run directory."""
    from deitctl import checkpoint

    if opts.resume is not None:
        run_dir = opts.resume
        if not (run_dir / "recipe.yaml").is_file():
            raise UsageError(f"{run_dir}: not a run directory (no recipe.yaml); check the --resume path")
        ckpt = checkpoint.latest(run_dir)
        if ckpt is None:
            raise UsageError(f"{run_dir}: no complete checkpoint to resume from; start again with --overwrite")
        recipe = load_recipe(str(run_dir / "recipe.yaml"))
        saved = json.loads((run_dir / _RUN_FILE).read_text()) if (run_dir / _RUN_FILE).is_file() else {}
        for key, value in saved.items():
            setattr(opts, key, value)
        return recipe, run_dir, ckpt

    recipe = load_recipe(recipe_ref, opts.recipe_overrides())
    if opts.teacher and recipe.distillation_type == "none" and not any(
            s.startswith("distillation_type=") for s in opts.sets):
        recipe = load_recipe(recipe_ref, [*opts.recipe_overrides(), "distillation_type=hard"])  # the paper's choice
    run_dir = opts.out or Path("runs") / recipe.name
    if any((run_dir / name).exists() for name in ("checkpoints", "metrics.jsonl", "model.safetensors")):
        if not opts.overwrite:
            raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                             "choose another --out, or pass --overwrite to set it aside and start again")
        backup = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(backup)  # never delete a user's run: it is kept beside the new one
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "recipe.yaml", dump_recipe(recipe))
    keep = {k: v for k, v in asdict(opts).items()
            if k in ("max_train_samples", "max_eval_samples", "image_column", "label_column", "per_device_batch")}
    write_text(run_dir / _RUN_FILE, json.dumps(keep, indent=2) + "\n")
    return recipe, run_dir, None


def batch_plan(global_batch: int, world: int, per_device_cap: int | None) -> tuple[int, int]:
    """(micro-batch per process, accumulation steps) so that world × micro × accum == global batch."""
    if global_batch % world:
        raise UsageError(f"global batch {global_batch} does not split over {world} processes; "
                         f"use a multiple of {world} (--batch-size)")
    per_device = global_batch // world
    cap = per_device_cap or per_device
    accum = -(-per_device // cap)
    while per_device % accum:
        accum += 1
    return per_device // accum, accum


def build_model(recipe: Recipe, num_classes: int) -> nn.Module:
    """A fresh model from the recipe, or — when fine-tuning — the ``init_from`` model adapted to the data."""
    from deitctl.models import create_model

    if not recipe.init_from:
        return create_model(recipe, num_classes)
    from deitctl.modelref import load_model

    extra: dict[str, Any] = {"drop_path_rate": recipe.drop_path} if recipe.drop_path else {}
    loaded = load_model(recipe.init_from, num_classes=num_classes, img_size=recipe.img_size, **extra)
    return loaded.model.train()


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    """AdamW (or SGD) with no weight decay on position embeddings, class/distillation tokens, norms and biases.

    timm's factory reads ``model.no_weight_decay()`` (pos_embed, cls_token, dist_token) and exempts
    every 1-D parameter (norm weights, biases) — exactly the authors' grouping. ``fused_optimizer``
    selects torch's fused AdamW kernel (the same update, one pass over all parameters).
    """
    from timm.optim import create_optimizer_v2

    extra = {"momentum": recipe.momentum} if recipe.optimizer == "sgd" else {"eps": recipe.opt_eps,
                                                                            "fused": recipe.fused_optimizer or None}
    return create_optimizer_v2(model, opt="adamw" if recipe.optimizer == "adamw" else "momentum", lr=lr,
                               weight_decay=recipe.weight_decay, **extra)


def finetune_recipe(recipe_ref: str | None, dataset: str | None) -> str:
    """The recipe to fine-tune with: the one named, else the dataset's transfer recipe."""
    if recipe_ref:
        return recipe_ref
    if not dataset:
        raise UsageError("name a recipe or a --dataset with a transfer recipe (e.g. --dataset cifar100)")
    if is_recipe(dataset):
        return dataset
    raise UsageError(f"no transfer recipe for dataset '{dataset}'; name a recipe: "
                     "`deitctl finetune RECIPE --from MODEL --dataset {dataset}`")
