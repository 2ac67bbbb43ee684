"""The paper's loss, checked against values computed by hand on fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from deitctl.training.losses import distillation_loss

CLS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
DIST = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
TEACHER = torch.tensor([[0.0, 3.0, 1.0], [0.0, 0.0, 4.0]])  # argmax: 1, 2
Y = torch.tensor([0, 1])


def ce(logits: list[float], label: int) -> float:
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def softmax(v: list[float], t: float) -> list[float]:
    e = [math.exp(x / t) for x in v]
    return [x / sum(e) for x in e]


def test_none_is_cross_entropy_of_class_head():
    want = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 1.5, 0.0], 1)) / 2
    got = distillation_loss((CLS, DIST), Y, TEACHER, "none")
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_hard_is_half_half_with_teacher_argmax():
    base = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 1.5, 0.0], 1)) / 2
    distill = (ce([0.0, 1.0, 0.0], 1) + ce([1.0, 0.0, 2.0], 2)) / 2
    got = distillation_loss((CLS, DIST), Y, TEACHER, "hard", alpha=0.5)
    assert got.item() == pytest.approx(0.5 * base + 0.5 * distill, rel=1e-6)


def test_hard_teacher_label_is_not_smoothed():
    smoothed_base = distillation_loss((CLS, DIST), Y, TEACHER, "none", label_smoothing=0.1).item()
    distill = (ce([0.0, 1.0, 0.0], 1) + ce([1.0, 0.0, 2.0], 2)) / 2
    got = distillation_loss((CLS, DIST), Y, TEACHER, "hard", alpha=0.5, label_smoothing=0.1).item()
    assert got == pytest.approx(0.5 * smoothed_base + 0.5 * distill, rel=1e-6)


@pytest.mark.parametrize("reduction", ["batchmean", "elementwise"])
def test_soft_matches_paper_formula(reduction):
    tau, lam = 3.0, 0.1
    base = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 1.5, 0.0], 1)) / 2
    kl_sum = 0.0
    for d, t in zip(DIST.tolist(), TEACHER.tolist(), strict=True):
        p_t, p_s = softmax(t, tau), softmax(d, tau)
        kl_sum += sum(a * math.log(a / b) for a, b in zip(p_t, p_s, strict=True))
    divisor = 2 if reduction == "batchmean" else 6  # the authors' code divides by batch × classes
    want = (1 - lam) * base + lam * tau * tau * kl_sum / divisor
    got = distillation_loss((CLS, DIST), Y, TEACHER, "soft", alpha=lam, tau=tau, soft_reduction=reduction)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_soft_targets_from_mixup():
    target = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    want = -sum(t * (v - math.log(sum(math.exp(x) for x in row)))
                for row, trow in zip(CLS.tolist(), target.tolist(), strict=True)
                for v, t in zip(row, trow, strict=True)) / 2
    assert distillation_loss(CLS, target, None, "none").item() == pytest.approx(want, rel=1e-6)


def test_none_mode_gives_dist_head_no_gradient():
    from tests.conftest import make_tiny_model

    model = make_tiny_model(distilled=True)
    model.set_distilled_training(True)
    model.train()
    out = model(torch.randn(4, 1, 16, 16))
    distillation_loss(out, torch.tensor([0, 1, 2, 3]), None, "none").backward()
    assert model.head_dist.weight.grad is None
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_modes_need_teacher_logits():
    with pytest.raises(ValueError, match="needs teacher logits"):
        distillation_loss((CLS, DIST), Y, None, "hard")


def test_hard_on_a_single_head_student_uses_that_head_for_both_terms():
    """Table 3's "hard distillation" row: no distillation token, (1-λ)·CE(Z, y) + λ·CE(Z, argmax Z_t)."""
    base = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 1.5, 0.0], 1)) / 2
    distill = (ce([2.0, 0.0, -1.0], 1) + ce([0.5, 1.5, 0.0], 2)) / 2
    got = distillation_loss(CLS, Y, TEACHER, "hard", alpha=0.5)
    assert got.item() == pytest.approx(0.5 * base + 0.5 * distill, rel=1e-6)


def test_soft_on_a_single_head_student_uses_that_head_for_both_terms():
    """Table 3's "usual distillation" row: no distillation token, KL against the class head at τ 3, λ 0.1."""
    tau, lam = 3.0, 0.1
    base = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 1.5, 0.0], 1)) / 2
    kl = sum(sum(a * math.log(a / b) for a, b in zip(softmax(t, tau), softmax(c, tau), strict=True))
             for c, t in zip(CLS.tolist(), TEACHER.tolist(), strict=True)) / 2
    got = distillation_loss(CLS, Y, TEACHER, "soft", alpha=lam, tau=tau)
    assert got.item() == pytest.approx((1 - lam) * base + lam * tau * tau * kl, rel=1e-6)
