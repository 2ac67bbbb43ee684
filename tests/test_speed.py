"""The speed levers: each rule, the teacher's fast path, compile fallbacks — behaviour, never timings."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model


@pytest.fixture(autouse=True)
def fresh_compiler():
    """As every deitctl run does: tests in one process compile many modules (dynamo keeps 8 per code object)."""
    from deitctl.runtime.compile import fresh_compiler

    fresh_compiler()


def test_nine_compiled_modules_in_one_process_all_compile_when_each_run_starts_fresh():
    from torch.profiler import profile

    from deitctl.runtime.compile import compile_in_place, first_call, fresh_compiler

    x = torch.randn(2, 1, 32, 32)
    for _ in range(9):
        fresh_compiler()  # what train(), deitctl eval and each bench row do first
        teacher = _conv_teacher()
        compile_in_place(teacher.model)
        first_call(teacher.model, lambda t=teacher: t(x), "teacher")
        with profile() as prof:
            teacher(x)
        assert any("Compiled" in e.key for e in prof.key_averages()), "ran eagerly"


def test_precision_and_attention_rules():
    from deitctl.runtime.attention import resolve_attention
    from deitctl.runtime.precision import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_attention("auto", cpu) == "math"  # the CPU's fused-attention backward is the slow one
    assert resolve_attention("auto", torch.device("cuda")) == "fused"
    assert resolve_attention("fused", cpu) == "fused"


def test_student_compile_rule():
    from deitctl.runtime.compile import COMPILE_STUDENT_MIN_STEPS, resolve_compile_student

    assert resolve_compile_student("auto", COMPILE_STUDENT_MIN_STEPS) is True
    assert resolve_compile_student("auto", COMPILE_STUDENT_MIN_STEPS - 1) is False
    assert resolve_compile_student(True, 1) is True and resolve_compile_student(False, 10**6) is False


def test_set_attention_switches_every_block_and_keeps_the_outputs():
    from deitctl.runtime.attention import set_attention

    model = make_tiny_model().eval()
    x = torch.randn(3, 1, 16, 16)
    set_attention(model, "fused")
    fused = model(x)
    set_attention(model, "math")
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == [False, False]
    assert torch.allclose(model(x), fused, atol=1e-5)


def _conv_teacher():
    import timm

    from deitctl.training.teacher import Teacher

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", in_chans=1, num_classes=4)
    return Teacher(model, (0.5,), (0.5,), (0.4,), (0.3,))


def test_teacher_fast_path_gives_plain_float_logits_close_to_fp32():
    import torch.nn.functional as F

    x = torch.randn(4, 1, 32, 32)
    reference = _conv_teacher()(x)
    teacher = _conv_teacher().prepare(torch.device("cpu"), "bf16", compile_model=False)
    assert teacher.model.conv1[0].weight.dtype == torch.bfloat16
    assert teacher.model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    logits = teacher(x)
    assert logits.dtype == torch.float32 and not logits.is_inference() and not logits.requires_grad
    assert (logits - reference).abs().max() < 0.05 * reference.abs().max()
    student = torch.randn(4, 4, requires_grad=True)  # autograd may save the teacher's targets
    F.cross_entropy(student, logits.argmax(-1)).backward()
    F.kl_div(F.log_softmax(student, -1), F.log_softmax(logits, -1), log_target=True, reduction="batchmean").backward()
    assert teacher.model.training is False and teacher.train().model.training is False


def test_compiled_teacher_matches_eager():
    from deitctl.runtime.compile import first_call

    x = torch.randn(4, 1, 32, 32)
    eager = _conv_teacher().prepare(torch.device("cpu"), "fp32", compile_model=False)(x)
    teacher = _conv_teacher().prepare(torch.device("cpu"), "fp32", compile_model=True)
    assert first_call(teacher.model, lambda: teacher(x), "teacher", frozen=True) is True
    assert torch.allclose(teacher(x), eager, atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN's fused convolutions are x86/arm CPU only")
def test_frozen_compile_really_freezes():
    """Frozen, the teacher's convolutions run as oneDNN kernels with BN folded in and weights pre-packed;
    unfrozen (what ``torch.compile(options={"freezing": True})`` silently gave) they stay plain."""
    from torch.profiler import profile

    from deitctl.runtime.compile import first_call

    x = torch.randn(2, 1, 32, 32)
    ops = {}
    for frozen in (True, False):
        teacher = _conv_teacher().prepare(torch.device("cpu"), "fp32", compile_model=True)
        first_call(teacher.model, lambda t=teacher: t(x), "teacher", frozen=frozen)
        with profile() as prof:
            teacher(x)
        ops[frozen] = {event.key for event in prof.key_averages()}
    assert "mkldnn::_convolution_pointwise" in ops[True] and "aten::convolution" not in ops[True]
    assert "aten::convolution" in ops[False]


def test_a_failing_compile_falls_back_to_eager_with_a_note(capsys):
    from deitctl.runtime.compile import compile_in_place, first_call

    model = make_tiny_model().eval()
    x = torch.randn(2, 1, 16, 16)
    want = model(x)
    compile_in_place(model)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    model._compiled_call_impl = broken  # what a machine without a compiler does at the first call
    assert first_call(model, lambda: model(x), "student") is False
    assert torch.equal(model(x), want)
    err = capsys.readouterr().err
    assert "torch.compile failed for the student" in err and "no C++ compiler found" in err and "--no-compile" in err


def test_eager_context_runs_a_compiled_module_uncompiled_then_restores_it():
    from deitctl.runtime.compile import compile_in_place, eager

    model = make_tiny_model()
    compile_in_place(model)
    compiled = model._compiled_call_impl
    with eager(model):
        assert model._compiled_call_impl is None
    assert model._compiled_call_impl is compiled


def test_warm_up_step_leaves_random_state_and_gradients_untouched():
    from accelerate import Accelerator

    from deitctl.training.parts import warm_up_step

    model = make_tiny_model(distilled=True).train()
    model.set_distilled_training(True)
    opt = torch.optim.AdamW(model.parameters())
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    warm_up_step(model, opt, torch.zeros(2, 1, 16, 16), Accelerator(cpu=True))
    assert torch.equal(torch.rand(5), expected)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("fused", [True, False])
def test_fused_optimizer_key(fused):
    from deitctl.config.loader import load_recipe
    from deitctl.training.optim import make_optimizer

    opt = make_optimizer(make_tiny_model(), load_recipe("deit-ti", [f"fused_optimizer={fused}"]), 1e-3)
    assert type(opt).__name__ == "AdamW" and bool(opt.defaults.get("fused")) is fused


def test_teacher_precision_auto_keeps_hard_labels_in_fp32():
    from deitctl.runtime.precision import resolve_teacher_precision

    assert resolve_teacher_precision("auto", "hard", "bf16") == "fp32"  # argmax flips near ties in bf16
    assert resolve_teacher_precision("auto", "soft", "bf16") == "bf16"
    assert resolve_teacher_precision("bf16", "hard", "fp32") == "bf16"  # an explicit choice is kept


@pytest.mark.parametrize("kind, bf16, fp32_teacher_compiled", [
    ("amx", True, True), ("avx512-bf16", True, True), ("avx512", False, False), ("avx2", False, True)])
def test_rules_follow_the_cpu_features_not_torchs_check(monkeypatch, kind, bf16, fp32_teacher_compiled):
    """AVX-512 without bf16 instructions: torch's mkldnn check says bf16, but it is emulated there → fp32."""
    from deitctl.runtime import hardware
    from deitctl.runtime.precision import resolve_precision
    from deitctl.runtime.rules import describe, resolve_compile_frozen

    flags = {"amx": dict(amx=True, avx512_bf16=True), "avx512-bf16": dict(amx=False, avx512_bf16=True),
             "avx512": dict(amx=False, avx512_bf16=False), "avx2": dict(amx=False, avx512_bf16=False, avx512=False)}
    fake = hardware.Cpu(model="test", vnni=True, avx2=True, threads=2, **{"avx512": True, **flags[kind]})
    monkeypatch.setattr(hardware, "cpu", lambda: fake)
    cpu = torch.device("cpu")
    assert fake.kind == kind
    assert resolve_precision("auto", cpu) == ("bf16" if bf16 else "fp32")
    assert resolve_compile_frozen("auto", "fp32", cpu) is fp32_teacher_compiled
    assert resolve_compile_frozen("auto", "bf16", cpu) is bf16  # measured faster compiled on both bf16 classes
    # (AVX2: a compiled fp32 teacher measured faster; nothing in bf16, which is emulated there)
    assert resolve_compile_frozen(True, "fp32", cpu) is True and resolve_compile_frozen(False, "bf16", cpu) is False
    assert describe(cpu).startswith(f"CPU class {kind} (rules ")
    assert ("not measured" in describe(cpu)) == (kind == "avx512")  # every class but plain AVX-512 was measured
