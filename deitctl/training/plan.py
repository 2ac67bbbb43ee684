"""Everything decided before anything is built: the resolved recipe, the run directory, the batch plan.

Kept apart from the loop so these rules (flag → recipe key, never clobber a run, how the global
batch splits over processes) are testable on their own and the loop reads as the loop alone.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deitctl.config.loader import dump_recipe, is_recipe, load_recipe
from deitctl.config.recipe import Recipe
from deitctl.core.errors import UsageError
from deitctl.core.lock import FileLock
from deitctl.records.rundir import RunDir

# the RunOptions that shape the data, kept in run.json so --resume sees the same samples
_DATA_OPTIONS = ("max_train_samples", "max_eval_samples", "image_column", "label_column", "per_device_batch")


@dataclass
class RunOptions:
    """Command-line choices of ``deitctl train`` / ``finetune``; those that are recipe keys become ``--set``s."""

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
    streaming: bool = False

    def recipe_overrides(self) -> list[str]:
        flags = {"dataset": self.dataset, "teacher": self.teacher, "init_from": self.init_from,
                 "epochs": self.epochs, "batch_size": self.batch_size, "img_size": self.img_size,
                 "precision": self.precision}
        off = ["compile=false", "compile_student=false"] if self.no_compile else []
        stream = ["streaming=true"] if self.streaming else []
        return [*self.sets, *(f"{k}={v}" for k, v in flags.items() if v is not None), *off, *stream]


@dataclass
class Plan:
    """What to run, where, and from which checkpoint; holds the run directory's lock until ``release``."""

    recipe: Recipe
    run: RunDir
    options: RunOptions
    resume_from: Path | None = None
    lock: FileLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _is_main_process() -> bool:
    """Rank 0 of a launch (torchrun / accelerate set RANK): it alone locks and writes the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def plan_run(recipe_ref: str, opts: RunOptions) -> Plan:
    """Resolve the recipe and the run directory (created, or checked for --resume), and lock it."""
    if opts.resume is not None:
        return _plan_resume(opts)

    recipe = load_recipe(recipe_ref, opts.recipe_overrides())
    if opts.teacher and recipe.distillation_type == "none" and not any(
            s.startswith("distillation_type=") for s in opts.sets):
        recipe = load_recipe(recipe_ref, [*opts.recipe_overrides(), "distillation_type=hard"])  # the paper's choice
    if recipe.is_distilled and not recipe.teacher:
        raise UsageError("distillation needs a teacher: pass --teacher MODEL or --set teacher=...")
    if recipe.streaming and opts.max_train_samples:
        raise UsageError("--max-train-samples draws a seeded subset, which a stream cannot: drop it (or drop "
                         "--streaming / --set streaming=false), or convert a subset first with `deitctl data convert`")
    from deitctl.data.splits import check_inputs
    from deitctl.models import refs
    from deitctl.records.runlog import resolve_report_to

    resolve_report_to(recipe.report_to)  # a tracker's missing package: said before anything is written

    for ref in (recipe.init_from, recipe.teacher if recipe.is_distilled else None):
        if ref:
            refs.preflight(ref)
    samples = check_inputs(recipe.dataset, (recipe.train_split, recipe.eval_split), opts.image_column,
                           opts.label_column, recipe.streaming, recipe.num_classes)
    samples = min(samples, opts.max_train_samples or samples)
    if samples < recipe.batch_size:
        raise UsageError(f"{samples} training samples make no full batch of {recipe.batch_size}; lower --batch-size "
                         "or use more data (--max-train-samples)")
    if recipe.init_from:  # the records name the architecture the run fine-tunes, not the recipe's default
        model, model_args = refs.architecture(recipe.init_from)
        recipe = recipe.model_copy(update={"model": model, "model_args": model_args})
    run = RunDir(opts.out or Path("runs") / recipe.name)
    if not _is_main_process():
        return Plan(recipe, run, opts)
    run.path.mkdir(parents=True, exist_ok=True)
    lock = run.lock("deitctl train").acquire()  # before looking: two runs may not both find the directory free
    if run.holds_run():
        if not opts.overwrite:
            lock.release()
            raise UsageError(f"{run.path} already holds a run; continue it with --resume {run.path}, "
                             "choose another --out, or pass --overwrite to set it aside and start again")
        run.set_aside()  # never delete a user's run: it is kept beside the new one (with the lock we hold)
        lock.release()
        run.path.mkdir(parents=True)
        lock = run.lock("deitctl train").acquire()
    record_run(run, recipe, opts)
    return Plan(recipe, run, opts, lock=lock)


def record_run(run: RunDir, recipe: Recipe, opts: RunOptions) -> None:
    """recipe.yaml and run.json: what ``--resume`` continues with."""
    run.create(dump_recipe(recipe), {k: v for k, v in asdict(opts).items() if k in _DATA_OPTIONS})


def _plan_resume(opts: RunOptions) -> Plan:
    from deitctl.training import checkpoint

    run = RunDir(opts.resume)
    if not run.is_run():
        raise UsageError(f"{run.path}: not a run directory (no recipe.yaml); check the --resume path")
    lock = run.lock("deitctl train --resume").acquire() if _is_main_process() else None
    try:
        ckpt = checkpoint.latest(run)
        if ckpt is None:
            raise UsageError(f"{run.path}: no complete checkpoint to resume from; start again with --overwrite")
        for key, value in run.options().items():
            setattr(opts, key, value)
        return Plan(run.recipe(), run, opts, ckpt, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


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
