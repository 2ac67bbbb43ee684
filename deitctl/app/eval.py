"""``deitctl eval``: load any model, check it fits the data, evaluate it (``evaluation.metrics``), optionally plot.

Without ``--dataset``, the data is the one the model records: a run's recipe, or the model card a Hub repo was
pushed with. Whatever needs no model (the reference, the options, the data) is checked before the model loads.

Runs under ``accelerate launch`` / ``torchrun`` too (each process evaluates a shard); only the main
process gets the result, the others get None. ``precision="auto"`` is bf16 where the hardware
computes it natively (top-1 within 0.1 point of fp32: docs/performance.md), else fp32. ``int8``
(CPU) quantizes the model, calibrated on images of the training split, not on the images it scores.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch
    from accelerate import Accelerator

    from deitctl.data.sources import OpenedDataset
    from deitctl.models.types import DataConfig

CALIBRATION_IMAGES = 256  # int8's activation ranges: a seeded sample of the training split (runtime.quantize)
# named datasets whose labelled held-out split is not called "test" (ImageNet's "test" has no labels)
_DEFAULT_SPLIT = {"imagenet-1k": "validation", "inat18": "validation", "inat19": "validation"}


@dataclass
class EvalRequest:
    model: str
    dataset: str | None = None  # default: the run's
    split: str | None = None  # default: the run's eval split, else test (validation for ImageNet)
    batch_size: int = 128
    precision: str = "auto"
    ema: bool = False
    max_samples: int | None = None
    per_class: bool = False
    confusion_png: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    num_workers: int = 2
    compile_model: bool = False
    save: bool = False  # keep eval.json and predictions.npz (per-image) in the model's directory
    crop_pct: float | None = None  # default: the model's config (the authors evaluate every model at 0.875)


def run(req: EvalRequest) -> dict[str, Any] | None:
    from deitctl.core.console import log
    from deitctl.data.sources import open_dataset
    from deitctl.data.splits import label_split
    from deitctl.models.refs import load_model
    from deitctl.records.plots import plot_confusion
    from deitctl.records.rundir import RunDir
    from deitctl.runtime.precision import resolve_precision

    dataset, split = _checked(req)
    opened = open_dataset(dataset)  # the data too is checked before the model loads: refusing it needs no model
    data = label_split(opened, split, req.image_column, req.label_column)
    loaded = load_model(req.model, ema=req.ema)
    import torch

    precision = loaded.check_runtime(req.precision, req.compile_model)
    if loaded.num_classes != data.num_classes:
        raise UsageError(
            f"model {req.model} has {loaded.num_classes} classes but dataset '{dataset}' has {data.num_classes}; "
            "evaluate on the data it was trained for, or fine-tune it first (deitctl finetune --dataset ...)"
        )
    if loaded.label_names and list(loaded.label_names) != list(data.class_names):
        ours, theirs = ", ".join(loaded.label_names[:3]), ", ".join(data.class_names[:3])
        log(f"warning: the model's class names ({ours}, …) differ from the dataset's ({theirs}, …); "
            "accuracy assumes both list the classes in the same order")
    from deitctl.data.loaders import build_eval_loader
    from deitctl.evaluation.metrics import device_of, evaluate

    accelerator = _accelerator()
    config = loaded.data_config
    if req.crop_pct is not None:
        config = dataclasses.replace(config, crop_pct=req.crop_pct)
    loader = build_eval_loader(data, config, req.batch_size, req.num_workers, req.max_samples)
    model = loaded.model
    if accelerator is not None:
        model, loader = model.to(accelerator.device), accelerator.prepare(loader)
    else:
        model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision, device_of(model))
    calibration = _calibration(opened, split, req, config) if precision == "int8" else None
    metrics = evaluate(model, loader, accelerator, precision, data.num_classes, calibration=calibration,
                       per_class=req.per_class or req.confusion_png is not None, show_progress=True, frozen=True,
                       compile_model=req.compile_model, predictions=req.save,
                       fuse=not Path(req.model).is_dir() or RunDir(Path(req.model)).taught_distillation_head())
    if accelerator is not None and not accelerator.is_main_process:
        return None
    predictions = metrics.pop("predictions", None)
    matrix = metrics.pop("confusion", None)
    correct, total = metrics.pop("per_class_correct", None), metrics.pop("per_class_total", None)
    result = {"model": req.model, "dataset": dataset, "split": split, **metrics, "precision": precision,
              "ema": req.ema, "compile": req.compile_model or precision == "int8",  # int8 always compiles
              "runtime": loaded.runtime, "crop_pct": config.crop_pct}
    if req.per_class and correct is not None:
        result["per_class"] = {name: (100.0 * c / t if t else None)
                               for name, c, t in zip(data.class_names, correct, total, strict=True)}
    if req.confusion_png and matrix is not None:
        plot_confusion(matrix, data.class_names, req.confusion_png, title=f"{Path(req.model).name} on {dataset}/{split}")
        result["confusion_png"] = str(req.confusion_png)
    if req.save:
        run = RunDir(Path(req.model))
        run.write_predictions(predictions, dataset, split)
        run.write_eval(result)
    return result


def _checked(req: EvalRequest) -> tuple[str, str]:
    """What needs no model is said before one loads (torch not even imported): the reference (a Hub model offline
    and never pulled, "runs/typo"), the options, and which data — --dataset, else what the model records."""
    from deitctl.core.console import log
    from deitctl.models.refs import preflight

    preflight(req.model)
    if req.ema and not Path(req.model).is_dir():
        raise UsageError("--ema needs a run directory (the EMA weights live in model_ema.safetensors)")
    if req.save and not Path(req.model).is_dir():
        raise UsageError(f"--save keeps the result in the model's directory, and {req.model} is not one; "
                         "use --json > FILE instead")
    if req.crop_pct is not None and not 0 < req.crop_pct <= 1:
        raise UsageError(f"--crop-pct must be in (0, 1] (got {req.crop_pct}); the authors evaluate at 0.875")
    recorded, where = _recorded(req.model, req.dataset)
    dataset = req.dataset or recorded.get("dataset")
    split = req.split or recorded.get("eval_split") or _DEFAULT_SPLIT.get(dataset or "", "test")
    if not dataset:
        raise UsageError(f"{req.model} records no dataset (neither a run's recipe.yaml nor a pushed model card "
                         "naming one), so name the data: --dataset D")
    if not req.dataset:
        log(f"evaluating on {dataset} ({split}), the dataset {where}; --dataset D chooses another")
    return dataset, split


def _recorded(model: str, dataset: str | None) -> tuple[dict[str, Any], str]:
    """The data a model records, and where: a run directory's recipe (dataset, eval_split) or, when no --dataset
    is given, the model card a Hub repo was pushed with (``deitctl.records.modelcard``), pulled now."""
    from deitctl.models.refs import fetch
    from deitctl.records.rundir import RunDir

    path = Path(model) if dataset else fetch(model)
    recipe = RunDir(path).recipe_data() if path.is_dir() else {}
    if recipe or dataset or not path.is_dir():
        return recipe, "its recipe names"
    return card_data(path / "README.md"), "its model card names"


def card_data(readme: Path) -> dict[str, Any]:
    """The data a pushed model card names: the dataset it was scored on when deitctl knows it by name
    (``cifar100-coarse``), else the first Hub id under ``datasets:`` (by deitctl's name for it, where it has one);
    and the split it was scored on. {} when the card names none (a model trained on a local dataset)."""
    import yaml

    from deitctl.data.sources import NAMED

    text = readme.read_text() if readme.is_file() else ""
    try:
        meta = yaml.safe_load(text.split("---\n")[1]) if text.startswith("---\n") else {}
        scored = dict(meta["model-index"][0]["results"][0]["dataset"]) if "model-index" in meta else {}
        listed = meta.get("datasets") or []
        hub_id = listed if isinstance(listed, str) else next((d for d in listed if isinstance(d, str)), None)
    except (yaml.YAMLError, LookupError, TypeError, ValueError, AttributeError):
        return {}  # not a card deitctl wrote, nor one like it
    named = next((name for name, source in NAMED.items() if hub_id and source.hub_id == hub_id), hub_id)
    dataset = scored["name"] if str(scored.get("name")) in NAMED else named
    return {"dataset": dataset, "eval_split": scored.get("split")} if dataset else {}


def _calibration(opened: OpenedDataset, split: str, req: EvalRequest, config: DataConfig) -> Iterator[torch.Tensor]:
    """int8's calibration batches: a seeded sample of the training split, never the images scored (unless the
    dataset has nothing else, which is said)."""
    from deitctl.core.console import log
    from deitctl.data.loaders import build_eval_loader
    from deitctl.data.splits import label_split

    calib = label_split(opened, "train" if "train" in opened.splits else split, req.image_column, req.label_column)
    if calib.split == split:
        log(f"[yellow]note:[/] dataset '{opened.name}' has no train split: int8 calibrates on {CALIBRATION_IMAGES} "
            f"images of '{split}', the split it scores")
    else:
        log(f"int8: the calibration images are {min(CALIBRATION_IMAGES, len(calib))} of '{opened.name}' split "
            f"'{calib.split}' (a seeded sample), not the '{split}' images scored")
    return (x for x, _ in build_eval_loader(calib, config, req.batch_size, 0, CALIBRATION_IMAGES))


def _accelerator() -> Accelerator | None:
    """An Accelerator only when launched on several processes; a single process needs none."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())  # without cpu=True accelerate sees one CPU process
