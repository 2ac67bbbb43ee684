"""Which attention kernel timm's blocks use: fused scaled-dot-product attention or the explicit one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def resolve_attention(setting: str, device: torch.device) -> str:
    """``auto`` → the training attention of this machine class (``runtime.rules``): ``math`` on CPUs, whose
    fused kernel's backward took 1.35× longer per DeiT-Ti step than plain q·kᵀ → softmax → ·v
    (benchmarks/bench_train.py), ``fused`` on GPUs."""
    if setting != "auto":
        return setting
    from deitctl.runtime.rules import rules_for

    return rules_for(device).train_attention


def set_attention(model: nn.Module, kind: str) -> None:
    """Switch every timm attention block between ``fused`` (F.scaled_dot_product_attention) and ``math``."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = kind == "fused"
