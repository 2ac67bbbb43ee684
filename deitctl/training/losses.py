"""The paper's training loss: cross-entropy on the class head plus distillation through attention.

With Z_s / Z_d the class / distillation head logits, Z_t the teacher's logits on the same (augmented,
mixed) input and y the (smoothed or mixed) target:

  none:  L = CE(Z_s, y), or for a ⚗ model ½·(CE(Z_s, y) + CE(Z_d, y)) (``both_heads``: the distillation head learns
         the labels, so the mean of the heads — timm's and transformers' prediction — is a trained classifier)
  soft:  L = (1-λ)·CE(Z_s, y) + λ·τ²·KL(softmax(Z_t/τ) ‖ softmax(Z_d/τ))
  hard:  L = (1-λ)·CE(Z_s, y) + λ·CE(Z_d, argmax Z_t)      — λ = ½ in the paper; y_t is not smoothed

A student with one head (no distillation token: a plain ViT, a convnet) takes both terms on that head,
Z_d = Z_s — the "usual distillation" and "hard distillation" rows of the paper's Table 3.

Where the authors' code differs: its soft term divides the summed KL by batch × classes (the
element-wise mean, ``soft_reduction="elementwise"`` here) instead of the per-sample mean the paper's
formula implies (``"batchmean"``, our default), and its defaults are τ = 1, λ = 0.5 rather than the
paper's τ = 3, λ = 0.1 (our soft recipes use the paper's values). It also refuses a teacher for a
student without a distillation token; we do not.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Outputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def base_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """CE against class indices (smoothed here) or against soft targets (already mixed and smoothed)."""
    if target.dtype.is_floating_point:
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def distillation_loss(
    outputs: Outputs,
    target: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    mode: Literal["none", "soft", "hard"],
    alpha: float = 0.5,
    tau: float = 1.0,
    label_smoothing: float = 0.0,
    soft_reduction: Literal["batchmean", "elementwise"] = "batchmean",
    both_heads: bool = False,
) -> torch.Tensor:
    """The loss of one batch; ``outputs`` is the (class, distillation) logit pair for ⚗ models.

    ``teacher_logits`` may also be the teacher's hard labels (an integer tensor) for ``hard``: a teacher-output
    store keeps only those where the logits would be large (``deitctl.training.teacher_store``).
    """
    cls, dist = outputs if isinstance(outputs, tuple) else (outputs, outputs)
    loss = base_loss(cls, target, label_smoothing)
    if mode == "none":
        if both_heads and isinstance(outputs, tuple):
            return (loss + base_loss(dist, target, label_smoothing)) / 2
        return loss
    if teacher_logits is None:
        raise ValueError(f"{mode} distillation needs teacher logits")
    if mode == "hard" and not teacher_logits.dtype.is_floating_point:  # labels already
        return (1 - alpha) * loss + alpha * F.cross_entropy(dist, teacher_logits.long())
    teacher_logits = teacher_logits.float()
    if mode == "soft":
        log_p_student = F.log_softmax(dist.float() / tau, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True)
        kl = kl / (dist.numel() if soft_reduction == "elementwise" else dist.shape[0])
        distill = kl * tau * tau
    elif mode == "hard":
        distill = F.cross_entropy(dist, teacher_logits.argmax(dim=-1))
    else:
        raise ValueError(f"unknown distillation mode {mode!r}")
    return (1 - alpha) * loss + alpha * distill
