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

from deitctl.core.errors import UsageError
from deitctl.models.inspect import head_logits, is_distilled
from deitctl.runtime.precision import autocast
from deitctl.runtime.predictor import Predictor

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from accelerate import Accelerator
    from torch import nn

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
    fuse: bool = True,
    predictions: bool = False,
    calibration: Iterable[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Percent top-1/top-5 (top-min(5, classes)), mean cross-entropy and the sample count.

    ``loader`` yields ``(images, labels)``; under accelerate it must be ``accelerator.prepare``d.
    Distilled models add ``top1_cls`` and ``top1_dist``; ``per_class`` adds ``per_class_correct``,
    ``per_class_total`` and ``confusion`` (rows: true class, columns: predicted). The model's
    train/eval mode is restored afterwards, so the training loop can call this between epochs.

    ``frozen``: the model will not train again (``deitctl eval``), so it is cast to the precision
    whole and, with ``compile_model``, compiled with its weights folded in (``speed.Predictor``);
    otherwise (between training epochs) it runs under autocast and is left as it was.

    ``fuse=False``: a distilled model's prediction is its class head alone — for a ⚗ model trained
    without a teacher, whose distillation head never learned. ``predictions``: add ``predictions``,
    per-image numpy arrays (``labels``, ``pred``, and ``pred_cls``/``pred_dist`` for distilled models),
    in the loader's order, for paired statistics. ``calibration``: image batches that set int8's activation
    ranges (``frozen`` only; see ``runtime.predictor.Predictor``).
    """
    import torch

    net = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else device_of(net)
    amp = autocast(precision, device)  # validate before the first batch
    if frozen:
        amp, forward = contextlib.nullcontext(), Predictor(net, precision, device, compile_model, calibration)
    elif precision == "int8":
        raise UsageError("precision int8 is for a model that will not train again (deitctl eval, deitctl bench)")
    else:
        forward = lambda x: head_logits(net, x)  # noqa: E731
    classes = num_classes or getattr(net, "num_classes", None)
    was_training = net.training
    net.eval()
    totals: dict[str, float] = {"n": 0, "loss": 0.0, "top1": 0, "top5": 0, "top1_cls": 0, "top1_dist": 0}
    confusion: torch.Tensor | None = None
    kept: dict[str, list[torch.Tensor]] = {}
    total_batches = _safe_len(loader)
    sharded = getattr(loader, "sharded", False)  # a stream: each process scores its own part, summed at the end
    if sharded and predictions:
        raise UsageError("per-image predictions need a map-style dataset; evaluate without --streaming")
    start = time.perf_counter()
    with _progress(show_progress and _is_main(accelerator), total_batches) as advance, torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with amp:
                fused, cls, dist = forward(images)
            classes = classes or fused.shape[1]
            _check_labels(labels, classes)
            batch = _batch_results(fused if fuse or cls is None else cls, cls, dist, labels, classes)
            if accelerator is not None and not sharded:
                batch = accelerator.gather_for_metrics(batch)
            _accumulate(totals, batch)
            if predictions:
                _keep(kept, batch)
            if per_class:
                confusion = _add_confusion(confusion, batch["labels"], batch["topk"][:, 0], classes)
            advance(len(images))
    net.train(was_training)
    if sharded and accelerator is not None and accelerator.num_processes > 1:
        totals, confusion = _sum_over_processes(totals, confusion, accelerator)
    out = _summary(totals, confusion, time.perf_counter() - start, distilled=is_distilled(net))
    if predictions:
        out["predictions"] = {k: torch.cat(v).cpu().numpy() for k, v in kept.items()}
    return out


def _sum_over_processes(totals: dict[str, float], confusion: torch.Tensor | None,
                        accelerator: Accelerator) -> tuple[dict[str, float], torch.Tensor | None]:
    import torch

    keys = sorted(totals)
    summed = accelerator.reduce(torch.tensor([float(totals[k]) for k in keys], dtype=torch.float64,
                                             device=accelerator.device), "sum").tolist()
    if confusion is not None:
        confusion = accelerator.reduce(confusion.to(accelerator.device), "sum").cpu()
    return dict(zip(keys, summed, strict=True)), confusion


def _batch_results(logits: torch.Tensor, cls: torch.Tensor | None, dist: torch.Tensor | None, labels: torch.Tensor,
                   classes: int) -> dict[str, torch.Tensor]:
    """What one batch contributes: per-image loss, top-k classes, labels (and each head's top-1)."""
    import torch.nn.functional as F

    batch = {"loss": F.cross_entropy(logits.float(), labels, reduction="none"),
             "topk": logits.float().topk(min(5, classes), dim=1).indices, "labels": labels}
    if cls is not None:
        batch["cls"], batch["dist"] = cls.argmax(1), dist.argmax(1)
    return batch


def _keep(kept: dict[str, list[torch.Tensor]], batch: dict[str, torch.Tensor]) -> None:
    for key, name in (("labels", "labels"), ("cls", "pred_cls"), ("dist", "pred_dist")):
        if key in batch:
            kept.setdefault(name, []).append(batch[key].cpu())
    kept.setdefault("pred", []).append(batch["topk"][:, 0].cpu())


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
    from deitctl.core.console import progress

    with progress("img", transient=True) as bar:
        task = bar.add_task("eval", total=total_batches, info="")
        # the bar counts batches (the total we know up front); the rate column shows images/s
        seen = {"img": 0, "t0": time.perf_counter()}

        def advance(n: int) -> None:
            seen["img"] += n
            rate = seen["img"] / max(time.perf_counter() - seen["t0"], 1e-9)
            bar.update(task, advance=1, rate=rate, info=f"{seen['img']} img")

        yield advance
