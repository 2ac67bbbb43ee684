"""Where a vision transformer looks: the attention of its class and distillation tokens.

Captured from timm's blocks with the explicit attention path (softmax(q·kᵀ) is then a tensor, passed
through ``attn_drop``, where a forward hook reads it). Two views, per prefix token (class, and the
distillation token of a DeiT⚗):

  last block  the token's attention to every patch in the final block, averaged over heads;
  rollout     attention rollout (Abnar & Zuidema, 2020): each block's head-averaged attention, with
              the residual connection as ½·A + ½·I and rows renormalised, multiplied through the
              blocks, so it follows information from the patches to the token across all layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError
from deitctl.runtime.attention import set_attention

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


def check_vit(model: nn.Module, what: str) -> None:
    if not hasattr(model, "blocks") or not hasattr(model, "patch_embed") or not hasattr(model.blocks[0], "attn"):
        raise UsageError(f"{what} needs a vision transformer (DeiT/ViT), not {type(model).__name__}; "
                         "drop --attention for this model")


@contextlib.contextmanager
def captured(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass appends each block's attention (batch, heads, tokens, tokens)."""
    maps: list[torch.Tensor] = []
    fused = [getattr(block.attn, "fused_attn", False) for block in model.blocks]
    set_attention(model, "math")
    hooks = [block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out.detach().float()))
             for block in model.blocks]
    try:
        yield maps
    finally:
        for hook in hooks:
            hook.remove()
        for block, was in zip(model.blocks, fused, strict=True):
            block.attn.fused_attn = was


def token_maps(maps: list[torch.Tensor], prefix: int, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """{"class last", "class rollout"[, "distillation last", "distillation rollout"]} → (batch, h, w) maps in [0, 1]."""
    import torch

    averaged = [m.mean(1) for m in maps]  # (batch, tokens, tokens) per block
    eye = torch.eye(averaged[0].shape[-1], device=averaged[0].device)
    rollout = eye.expand_as(averaged[0]).clone()
    for a in averaged:
        a = 0.5 * a + 0.5 * eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    out = {}
    for index, name in list(enumerate(("class", "distillation")))[: min(prefix, 2)]:
        for kind, source in (("last", averaged[-1]), ("rollout", rollout)):
            patches = source[:, index, prefix:].reshape(-1, *grid)
            low = patches.flatten(1).min(1).values.view(-1, 1, 1)
            high = patches.flatten(1).max(1).values.view(-1, 1, 1)
            out[f"{name} {kind}"] = (patches - low) / (high - low).clamp_min(1e-12)
    return out


def overlay(image: np.ndarray, heat: np.ndarray, size: int = 224, alpha: float = 0.55) -> np.ndarray:
    """A map (``heat``: h×w in [0, 1], e.g. a rollout of ``token_maps``) drawn over the image the model saw (H×W×C in
    [0, 1]), both scaled to size×size: uint8 RGB to show a person. The image is scaled with nearest neighbours
    (its pixels stay visible at 28 px), the coarse patch grid bilinearly, coloured with matplotlib's inferno."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    base = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).resize((size, size), Image.NEAREST)
    grid = Image.fromarray((np.clip(heat, 0, 1) * 255).round().astype(np.uint8)).resize((size, size), Image.BILINEAR)
    colour = colormaps["inferno"](np.asarray(grid) / 255.0)[..., :3]
    mixed = (1 - alpha) * np.asarray(base) / 255.0 + alpha * colour
    return (mixed * 255).round().astype(np.uint8)
