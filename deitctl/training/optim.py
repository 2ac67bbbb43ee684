"""The optimizer: AdamW (or SGD) with the authors' parameter groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.config.recipe import Recipe


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD with no weight decay on position embeddings, class/distillation tokens, norms and biases.

    timm's factory reads ``model.no_weight_decay()`` (pos_embed, cls_token, dist_token) and exempts
    every 1-D parameter (norm weights, biases) — exactly the authors' grouping. ``sgd`` is timm's ``sgd``,
    Nesterov momentum: what the authors ran for transfer (their ``--opt sgd`` goes through timm's factory);
    ``momentum`` is classical heavy-ball SGD. ``fused_optimizer`` selects torch's fused AdamW kernel (the
    same update, one pass over all parameters).
    """
    from timm.optim import create_optimizer_v2

    if recipe.optimizer == "adamw":
        extra = {"eps": recipe.opt_eps, "fused": recipe.fused_optimizer or None}
    else:
        extra = {"momentum": recipe.momentum}
    return create_optimizer_v2(model, opt=recipe.optimizer, lr=lr, weight_decay=recipe.weight_decay, **extra)
