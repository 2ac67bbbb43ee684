"""``deitctl info``: parameters and GMACs per image (multiply-accumulates ÷ 1e9, the paper's "FLOPs")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deitctl.core.errors import UsageError


@dataclass
class InfoRequest:
    model: str  # a recipe name, timm name or any model reference
    img_size: int | None = None
    sets: list[str] = field(default_factory=list)  # recipe overrides


def run(req: InfoRequest) -> dict[str, Any]:
    from deitctl.models.refs import preflight

    preflight(req.model)  # offline and not cached: say so now, not after torch and timm have loaded
    import torch

    from deitctl.config.loader import is_recipe, load_recipe
    from deitctl.models.factory import create_model
    from deitctl.models.inspect import count_gmacs, count_params, input_size, is_distilled
    from deitctl.models.refs import load_model

    img_size = req.img_size
    if is_recipe(req.model):
        recipe = load_recipe(req.model, req.sets)
        img_size = img_size or recipe.img_size
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = create_model(recipe, img_size=img_size)
    else:
        if req.sets:
            raise UsageError("--set applies to recipes only; pass a recipe name to override its keys")
        model = load_model(req.model, img_size=img_size).model
    c, h, _ = input_size(model)
    size = img_size or h
    params = count_params(model)
    return {"model": req.model, "arch": type(model).__name__, "params": params, "params_m": round(params / 1e6, 2),
            "gmacs": round(count_gmacs(model, size, c), 3), "img_size": size, "in_chans": c,
            "distilled": is_distilled(model)}
