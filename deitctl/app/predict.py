"""``deitctl predict``: ask a trained model about images — top-k classes, each head of a DeiT⚗, where it looks.

Any model reference ``eval`` takes; images of any mode and size are preprocessed exactly as ``eval``
does (the model's DataConfig through timm's transform). ``attention``: one PNG per image, the image
beside its class token's (and distillation token's) attention in the last block and rolled out over
all blocks (``deitctl.evaluation.attention``), written to a directory that appears complete or not at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch

    from deitctl.models.types import LoadedModel


@dataclass
class PredictRequest:
    model: str
    inputs: list[Path]  # images and directories of images
    top_k: int = 5
    batch_size: int = 32
    precision: str = "auto"
    attention: Path | None = None  # write attention PNGs here
    overwrite: bool = False
    num_workers: int = 2


def run(req: PredictRequest) -> dict[str, Any]:
    """{"model", "predictions": [{path, top_k, heads?}], "skipped": [{path, error}], "attention": dir | None}.

    A model without class names (no ``label_names`` in its config) predicts class indices (``label``: None), and
    says so in one line."""
    from deitctl.data import images
    from deitctl.models.refs import preflight

    if req.top_k < 1:
        raise UsageError(f"--top-k must be at least 1 (got {req.top_k})")
    if req.attention is not None and req.attention.exists() and not req.overwrite:
        raise UsageError(f"{req.attention} already exists; choose another --attention directory or pass --overwrite")
    files = images.collect(req.inputs)
    preflight(req.model)  # what needs no model is said now, not after torch and timm have loaded
    from deitctl.core.atomic import atomic_dir
    from deitctl.core.console import log, progress
    from deitctl.data.transforms import eval_transform
    from deitctl.evaluation.attention import check_vit
    from deitctl.evaluation.metrics import device_of
    from deitctl.models.refs import load_model
    from deitctl.runtime.predictor import Predictor

    loaded = load_model(req.model)
    if not loaded.label_names:
        log(f"[yellow]note:[/] {req.model} has no class names in its config (label_names), so predictions are class "
            "indices")
    if req.attention is not None:
        check_vit(loaded.model, "--attention")
    device, precision = runtime_for(loaded, req.precision)
    fuse = fuses(loaded)
    predictor = Predictor(loaded.model, precision, device) if req.attention is None else None
    config = loaded.data_config
    predictions: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    maps_dir = atomic_dir(req.attention, req.overwrite) if req.attention else contextlib.nullcontext(None)
    with progress("img", transient=True) as bar, maps_dir as out:
        task = bar.add_task("predict", total=len(files), info="")
        for batch, indices, bad in images.batches(files, eval_transform(config), config.channels, req.batch_size,
                                                  req.num_workers):
            for index, why in bad:
                log(f"[yellow]warning:[/] skipped {files[index]}: not a readable image ({why})")
                skipped.append({"path": str(files[index]), "error": why})
            if batch is not None:
                heads = _heads(loaded, batch, predictor, out, [files[i] for i in indices], indices)
                for k, index in enumerate(indices):
                    predictions.append(describe(files[index], heads, k, loaded.label_names, req.top_k, fuse))
            bar.update(task, advance=len(indices) + len(bad), info=f"{len(skipped)} skipped")
    if not predictions:
        raise UsageError(f"none of the {len(files)} files is a readable image ({skipped[0]['path']}: "
                         f"{skipped[0]['error']})")
    return {"model": req.model, "device": str(device_of(loaded.model)), "precision": precision,
            "predictions": predictions, "skipped": skipped, "attention": str(req.attention) if req.attention else None}


def runtime_for(loaded: LoadedModel, precision: str) -> tuple[torch.device, str]:
    """(device, precision) a model predicts with: ``auto`` is bf16 where the hardware computes it natively; int8 is
    refused (it calibrates on training images). ``demo`` asks this too, so both answer alike."""
    import torch

    from deitctl.runtime.precision import resolve_precision

    precision = loaded.check_runtime(precision, False)
    if precision == "int8":  # static int8 needs calibration images that are not the ones predicted
        raise UsageError("--precision int8 is for deitctl eval and bench (it calibrates on training images); "
                         "predict with auto, bf16 or fp32, or export an int8 ONNX model (deitctl export "
                         "--format onnx --quantize int8) and predict with that")
    device = torch.device("cuda" if torch.cuda.is_available() and loaded.runtime == "torch" else "cpu")
    return device, resolve_precision(precision, device)


def fuses(loaded: LoadedModel) -> bool:
    """Whether the answer is the fused prediction: not for a DeiT⚗ run whose distillation head never learned."""
    from deitctl.records.rundir import RunDir

    return not (loaded.path and not RunDir(loaded.path).taught_distillation_head())


def _heads(loaded: LoadedModel, batch: torch.Tensor, predictor: Any, out: Path | None, paths: list[Path],
           indices: list[int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(fused, class, distillation) logits; with ``out``, also one attention PNG per image."""
    import torch

    from deitctl.data.transforms import unnormalised
    from deitctl.evaluation.attention import captured, token_maps
    from deitctl.models.inspect import head_logits
    from deitctl.records.plots import plot_attention

    if out is None:
        with torch.inference_mode():
            return predictor(batch)
    model = loaded.model.eval()
    with torch.inference_mode(), captured(model) as maps:
        fused, cls, dist = head_logits(model, batch.to(next(model.parameters()).dtype))
    grid = tuple(model.patch_embed.grid_size)
    views = token_maps(maps, getattr(model, "num_prefix_tokens", 1), grid)
    shown = unnormalised(batch, loaded.data_config.mean, loaded.data_config.std, loaded.data_config.channels)
    for k, (path, index) in enumerate(zip(paths, indices, strict=True)):
        plot_attention(shown[k], {name: m[k].cpu().numpy() for name, m in views.items()},
                       out / f"{index:05d}-{path.stem}.png", title=path.name)
    return tuple(None if t is None else t.float() for t in (fused, cls, dist))


def describe(path: Path, heads: tuple, k: int, labels: list[str] | None, top_k: int, fuse: bool) -> dict[str, Any]:
    """Image ``k`` of a batch as one JSON line of ``predict --json``: its top-k, and each head of a DeiT⚗."""
    fused, cls, dist = heads
    row: dict[str, Any] = {"path": str(path), "top_k": _top(cls if cls is not None and not fuse else fused, k,
                                                           labels, top_k)}
    if cls is not None:
        row["heads"] = {"class": _top(cls, k, labels, top_k), "distillation": _top(dist, k, labels, top_k),
                        "fused": _top(fused, k, labels, top_k)}
    return row


def _top(logits: torch.Tensor, k: int, labels: list[str] | None, top_k: int) -> list[dict[str, Any]]:
    probs = logits[k].float().softmax(-1)
    values, classes = probs.topk(min(top_k, probs.numel()))
    return [{"label": labels[int(c)] if labels else None, "index": int(c), "prob": round(float(v), 6)}
            for v, c in zip(values, classes, strict=True)]
