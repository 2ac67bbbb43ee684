"""``deitctl report``: a Table 3-style comparison of finished runs (``deitctl.records.report``), and — with
``attention_images`` — where each transformer looks on a few of their test images (attention rollout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deitctl.core.errors import UsageError
from deitctl.records.report import Report, build_report


@dataclass
class ReportRequest:
    runs: list[Path]
    out: Path = Path("report.md")
    dataset: str | None = None
    attention_images: int = 0  # test images whose attention rollout the report shows, per ViT run


def run(req: ReportRequest) -> Report:
    if req.attention_images < 0:
        raise UsageError(f"--attention-images must be >= 0 (got {req.attention_images})")
    figure = None
    if req.attention_images:
        figure = req.out.with_name(f"{req.out.stem}_attention.png")
        if not attention_figure(req.runs, req.attention_images, figure):
            figure = None
    return build_report(req.runs, req.out, dataset=req.dataset, attention=figure)


def attention_figure(runs: list[Path], count: int, out: Path) -> bool:
    """One PNG: the first ``count`` test images of the first ViT run's data, and each ViT run's class (and
    distillation) token rollout over them. False when no run is a vision transformer."""
    import numpy as np
    import torch

    from deitctl.data.samples import decode_image
    from deitctl.data.splits import load_split
    from deitctl.data.transforms import eval_transform
    from deitctl.evaluation.attention import captured, token_maps
    from deitctl.models.inspect import head_logits
    from deitctl.models.refs import load_model
    from deitctl.records.plots import plot_attention_grid
    from deitctl.records.rundir import RunDir

    columns: dict[str, list[Any]] = {}
    shown: list[Any] = []
    for path in runs:
        loaded = load_model(str(path))
        model = loaded.model
        if not hasattr(model, "blocks") or loaded.runtime != "torch":
            continue  # a convnet teacher has no attention to show
        recipe = RunDir(path).recipe_data()
        split = load_split(recipe.get("dataset", ""), recipe.get("eval_split", "test"))
        mode = "L" if loaded.data_config.channels == 1 else "RGB"
        pictures = [decode_image(v, mode, i) for i, v in enumerate(split.dataset[:count][split.image_column])]
        batch = torch.stack([eval_transform(loaded.data_config)(p) for p in pictures])
        with torch.inference_mode(), captured(model) as maps:
            head_logits(model, batch)
        views = token_maps(maps, getattr(model, "num_prefix_tokens", 1), tuple(model.patch_embed.grid_size))
        for name in ("class rollout", "distillation rollout"):
            if name in views:
                columns[f"{path.name}\n{name.split()[0]} token"] = [m.numpy() for m in views[name]]
        if not shown:
            shown = [np.asarray(p, dtype=np.float32) / 255.0 for p in pictures]
    if not columns:
        return False
    images = [p[..., None] if p.ndim == 2 else p for p in shown]
    plot_attention_grid(images, columns, out, title="attention rollout of each transformer's tokens")
    return True
