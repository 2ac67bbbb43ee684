"""Evaluation: top-1/top-5 accuracy and loss, with the paper's late fusion for distilled models.

``evaluate`` is the one metric loop: the training loop calls it every epoch and ``deitctl eval``
calls it once. A distilled DeiT predicts with the mean of its class-head and distillation-head
LOGITS (what the authors' code and timm's eval-mode forward do); we report each head alone too,
as the paper's Table 3 does. Under several processes every batch is gathered with
``gather_for_metrics``, which drops the samples the sampler duplicated to even out the last batch,
so counts are exact.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from deitctl.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from accelerate import Accelerator
    from torch import nn
    from torch.utils.data import DataLoader

    from deitctl.data import LabeledSplit

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a precision name; fp16 is refused on the CPU (slow, inexact there)."""
    import torch

    device_type = torch.device(device).type
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; use one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise UsageError(f"precision fp16 needs a CUDA GPU but this runs on the {device_type.upper()}; "
                         "use --precision bf16 or fp32")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


def head_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(fused, class head, distillation head) logits; the last two are None for a plain model.

    timm's distilled model only returns both heads in train mode, so we run its two halves
    (``forward_features`` then each head on its token) to get them in eval mode.
    """
    from deitctl.models import is_distilled

    if not is_distilled(model):
        return model(images), None, None
    tokens = model.forward_features(images)
    cls = model.head(model.head_drop(tokens[:, 0]))
    dist = model.head_dist(model.head_drop(tokens[:, 1]))
    return (cls + dist) / 2, cls, dist


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    accelerator: Accelerator | None = None,
    precision: str = "fp32",
    num_classes: int | None = None,
    per_class: bool = False,
    *,
    show_progress: bool = False,
    frozen: bool = False,
    compile_model: bool = False,
) -> dict[str, Any]:
    """Percent top-1/top-5 (top-min(5, classes)), mean cross-entropy and the sample count.

    ``loader`` yields ``(images, labels)``; under accelerate it must be ``accelerator.prepare``d.
    Distilled models add ``top1_cls`` and ``top1_dist``; ``per_class`` adds ``per_class_correct``,
    ``per_class_total`` and ``confusion`` (rows: true class, columns: predicted). The model's
    train/eval mode is restored afterwards, so the training loop can call this between epochs.

    ``frozen``: the model will not train again (``deitctl eval``), so it is cast to the precision
    whole and, with ``compile_model``, compiled with its weights folded in (``speed.Predictor``);
    otherwise (between training epochs) it runs under autocast and is left as it was.
    """
    import torch
    import torch.nn.functional as F

    from deitctl.models import is_distilled
    from deitctl.speed import Predictor

    net = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else device_of(net)
    amp = autocast(precision, device)  # validate before the first batch
    if frozen:
        amp, forward = contextlib.nullcontext(), Predictor(net, precision, device, compile_model)
    else:
        forward = lambda x: head_logits(net, x)  # noqa: E731
    classes = num_classes or getattr(net, "num_classes", None)
    was_training = net.training
    net.eval()
    totals: dict[str, float] = {"n": 0, "loss": 0.0, "top1": 0, "top5": 0, "top1_cls": 0, "top1_dist": 0}
    confusion: torch.Tensor | None = None
    total_batches = _safe_len(loader)
    start = time.perf_counter()
    with _progress(show_progress and _is_main(accelerator), total_batches) as advance, torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with amp:
                fused, cls, dist = forward(images)
            classes = classes or fused.shape[1]
            _check_labels(labels, classes)
            k = min(5, classes)
            batch = {
                "loss": F.cross_entropy(fused.float(), labels, reduction="none"),
                "topk": fused.float().topk(k, dim=1).indices,
                "labels": labels,
            }
            if cls is not None:
                batch["cls"], batch["dist"] = cls.argmax(1), dist.argmax(1)
            if accelerator is not None:
                batch = accelerator.gather_for_metrics(batch)
            _accumulate(totals, batch)
            if per_class:
                confusion = _add_confusion(confusion, batch["labels"], batch["topk"][:, 0], classes)
            advance(len(images))
    net.train(was_training)
    return _summary(totals, confusion, time.perf_counter() - start, distilled=is_distilled(net))


def device_of(model: nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a weightless ONNX Runtime model)."""
    import torch

    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _check_labels(labels: torch.Tensor, classes: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        bad = int(labels[(labels < 0) | (labels >= classes)][0])
        hint = "the split is unlabelled (e.g. ImageNet's test split): pass --split validation" if bad < 0 else \
            f"the model has {classes} classes"
        raise UsageError(f"label {bad} is outside 0..{classes - 1}; {hint}")


def _accumulate(totals: dict[str, float], batch: dict[str, torch.Tensor]) -> None:
    labels = batch["labels"]
    totals["n"] += len(labels)
    totals["loss"] += batch["loss"].sum().item()
    totals["top1"] += (batch["topk"][:, 0] == labels).sum().item()
    totals["top5"] += (batch["topk"] == labels[:, None]).any(1).sum().item()
    if "cls" in batch:
        totals["top1_cls"] += (batch["cls"] == labels).sum().item()
        totals["top1_dist"] += (batch["dist"] == labels).sum().item()


def _add_confusion(confusion: torch.Tensor | None, labels: torch.Tensor, preds: torch.Tensor, classes: int) -> torch.Tensor:
    import torch

    counts = torch.bincount(labels.cpu() * classes + preds.cpu(), minlength=classes * classes)
    counts = counts.reshape(classes, classes)
    return counts if confusion is None else confusion + counts


def _summary(totals: dict[str, float], confusion: torch.Tensor | None, seconds: float, distilled: bool) -> dict[str, Any]:
    n = int(totals["n"])

    def pct(key: str) -> float:
        return 100.0 * totals[key] / n if n else 0.0

    out: dict[str, Any] = {"top1": pct("top1"), "top5": pct("top5"), "loss": totals["loss"] / n if n else 0.0,
                           "num_samples": n}
    if distilled:
        out["top1_cls"], out["top1_dist"] = pct("top1_cls"), pct("top1_dist")
    out["img_per_s"] = n / seconds if seconds > 0 else 0.0
    if confusion is not None:
        out["per_class_correct"] = confusion.diagonal().tolist()
        out["per_class_total"] = confusion.sum(1).tolist()
        out["confusion"] = confusion.tolist()
    return out


def _safe_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _is_main(accelerator: Accelerator | None) -> bool:
    return accelerator is None or accelerator.is_main_process


@contextlib.contextmanager
def _progress(enabled: bool, total_batches: int | None):
    """Yield ``advance(num_images)``; a rich bar with rate and ETA when enabled, a no-op otherwise."""
    if not enabled:
        yield lambda n: None
        return
    from deitctl.console import progress

    with progress("img", transient=True) as bar:
        task = bar.add_task("eval", total=total_batches, info="")
        # the bar counts batches (the total we know up front); the rate column shows images/s
        seen = {"img": 0, "t0": time.perf_counter()}

        def advance(n: int) -> None:
            seen["img"] += n
            rate = seen["img"] / max(time.perf_counter() - seen["t0"], 1e-9)
            bar.update(task, advance=1, rate=rate, info=f"{seen['img']} img")

        yield advance


# --------------------------------------------------------------------------------------- loaders
def build_eval_loader(
    split: LabeledSplit,
    data_config: dict[str, Any],
    batch_size: int,
    num_workers: int,
    max_samples: int | None = None,
    seed: int = 0,
) -> DataLoader:
    """A deterministic (unshuffled) loader that preprocesses images exactly as the model expects.

    ``data_config`` is a ``LoadedModel.data_config``: its input_size gives the channels and size,
    mean/std/crop_pct/interpolation the resize-center-crop-normalize pipeline.
    """
    import torch
    from torch.utils.data import DataLoader

    from deitctl.data import subset
    from deitctl.samples import collate, with_transform
    from deitctl.transforms import eval_transform

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")
    channels, size = int(data_config["input_size"][0]), int(data_config["input_size"][-1])
    transform = eval_transform(
        size,
        data_config.get("mean", (0.485, 0.456, 0.406)),
        data_config.get("std", (0.229, 0.224, 0.225)),
        channels,
        crop_pct=data_config.get("crop_pct") or 0.875,
        interpolation=data_config.get("interpolation") or "bicubic",
    )
    dataset = with_transform(subset(split, max_samples, seed), transform, channels)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


# ------------------------------------------------------------------------------- deitctl eval
# named datasets whose labelled held-out split is not called "test" (ImageNet's "test" has no labels)
_DEFAULT_SPLIT = {"imagenet-1k": "validation", "inat18": "validation", "inat19": "validation"}


def run_defaults(model_ref: str) -> dict[str, Any]:
    """``dataset`` / ``eval_split`` from a run directory's ``recipe.yaml``; empty for other references.

    Read as plain YAML (not validated) so a run written by an older deitctl still evaluates.
    """
    from pathlib import Path

    import yaml

    recipe = Path(model_ref) / "recipe.yaml"
    if not recipe.is_file():
        return {}
    try:
        data = yaml.safe_load(recipe.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{recipe}: unreadable ({e}); pass --dataset and --split") from None
    return {k: data[k] for k in ("dataset", "eval_split") if isinstance(data, dict) and data.get(k)}


def run_eval(
    model_ref: str,
    dataset: str | None = None,
    split: str | None = None,
    batch_size: int = 128,
    precision: str = "auto",
    ema: bool = False,
    max_samples: int | None = None,
    per_class: bool = False,
    confusion_png: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    num_workers: int = 2,
    compile_model: bool = False,
) -> dict[str, Any] | None:
    """``deitctl eval``: load, check the model fits the data, evaluate, optionally plot.

    Runs under ``accelerate launch`` / ``torchrun`` too (each process evaluates a shard); only the
    main process gets the result, the others get None. ``precision="auto"`` is bf16 where the
    hardware computes it natively (top-1 within 0.1 point of fp32: docs/performance.md), else fp32.
    """
    from pathlib import Path

    import torch

    from deitctl.console import log
    from deitctl.data import load_split
    from deitctl.modelref import load_model
    from deitctl.speed import resolve_precision

    defaults = run_defaults(model_ref)
    dataset = dataset or defaults.get("dataset")
    split = split or defaults.get("eval_split") or _DEFAULT_SPLIT.get(dataset or "", "test")
    if not dataset:
        raise UsageError(f"{model_ref} is not a run directory (no recipe.yaml), so name the data: --dataset D")
    if ema and not Path(model_ref).is_dir():
        raise UsageError("--ema needs a run directory (the EMA weights live in model_ema.safetensors)")
    loaded = load_model(model_ref, ema=ema)
    precision = loaded.check_runtime(precision, compile_model)
    data = load_split(dataset, split, image_column, label_column)
    if loaded.num_classes != data.num_classes:
        raise UsageError(
            f"model {model_ref} has {loaded.num_classes} classes but dataset '{dataset}' has {data.num_classes}; "
            "evaluate on the data it was trained for, or fine-tune it first (deitctl finetune --dataset ...)"
        )
    if loaded.label_names and list(loaded.label_names) != list(data.class_names):
        ours, theirs = ", ".join(loaded.label_names[:3]), ", ".join(data.class_names[:3])
        log(f"warning: the model's class names ({ours}, …) differ from the dataset's ({theirs}, …); "
            "accuracy assumes both list the classes in the same order")
    accelerator = _accelerator()
    loader = build_eval_loader(data, loaded.data_config, batch_size, num_workers, max_samples)
    model = loaded.model
    if accelerator is not None:
        model, loader = model.to(accelerator.device), accelerator.prepare(loader)
    else:
        model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision, device_of(model))
    metrics = evaluate(model, loader, accelerator, precision, data.num_classes,
                       per_class=per_class or confusion_png is not None, show_progress=True, frozen=True,
                       compile_model=compile_model)
    if not _is_main(accelerator):
        return None
    matrix = metrics.pop("confusion", None)
    correct, total = metrics.pop("per_class_correct", None), metrics.pop("per_class_total", None)
    result = {"model": model_ref, "dataset": dataset, "split": split, **metrics, "precision": precision, "ema": ema,
              "compile": compile_model, "runtime": loaded.runtime}
    if per_class and correct is not None:
        result["per_class"] = {name: (100.0 * c / t if t else None) for name, c, t in zip(data.class_names, correct, total, strict=True)}
    if confusion_png and matrix is not None:
        plot_confusion(matrix, data.class_names, confusion_png, title=f"{Path(model_ref).name} on {dataset}/{split}")
        result["confusion_png"] = str(confusion_png)
    return result


def _accelerator() -> Accelerator | None:
    """An Accelerator only when launched on several processes; a single process needs none."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())  # without cpu=True accelerate sees one CPU process


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str, title: str = "") -> None:
    """A row-normalised confusion matrix (true class × predicted class) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from deitctl.atomic import atomic_path

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(class_names)
    side = min(4 + 0.4 * n, 40)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 50:  # beyond that the labels overlap; the colours still tell the story
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
    if n <= 20:
        for i, j in np.ndindex(n, n):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
