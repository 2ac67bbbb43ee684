"""Looking inside a model: its heads, the input it expects, parameters and multiply-accumulates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deitctl.models.types import DataConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


def is_distilled(model: nn.Module) -> bool:
    """True for models with a distillation token and ``head_dist`` (timm's VisionTransformerDistilled)."""
    return hasattr(model, "head_dist") and hasattr(model, "dist_token")


def head_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(fused, class head, distillation head) logits; the last two are None for a plain model.

    timm's distilled model only returns both heads in train mode, so we run its two halves
    (``forward_features`` then each head on its token) to get them in eval mode.
    """
    if not is_distilled(model):
        return model(images), None, None
    tokens = model.forward_features(images)
    cls = model.head(model.head_drop(tokens[:, 0]))
    dist = model.head_dist(model.head_drop(tokens[:, 1]))
    return (cls + dist) / 2, cls, dist


def data_config(model: nn.Module) -> DataConfig:
    """timm's preprocessing config for the model *as built*: ``resolve_input_data_config`` follows a custom
    ``img_size``/``in_chans`` (``resolve_model_data_config`` would answer the pretrained 3×224×224)."""
    import logging

    from timm.data import resolve_input_data_config

    logging.getLogger("timm").setLevel(logging.ERROR)  # "pretrained mean does not match 1 channels"
    return DataConfig.from_dict(resolve_input_data_config(model))


def input_size(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) the model expects now, following any resize since it was built."""
    return data_config(model).input_size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: nn.Module, img_size: int | None = None, in_chans: int | None = None) -> float:
    """Multiply-accumulates per image ÷ 1e9 (the unit of the paper's "FLOPs" column).

    ``torch.utils.flop_counter`` counts 2 FLOPs per multiply-accumulate, so we halve its total.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    c, h, w = input_size(model)
    device = next(model.parameters()).device  # meta tensors count as well and cost nothing
    x = torch.zeros(1, in_chans or c, img_size or h, img_size or w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9
