"""The speed levers: one small rule each, on by default only where it measured faster, each with an off switch.

Measured side by side (``benchmarks/``, ``docs/performance.md``); none changes what is computed beyond
floating-point rounding. The recipe keys that switch them:

  precision: auto        bf16 where the hardware computes it natively (CPU AMX / AVX512-BF16, GPU Ampere+):
                         autocast for the student that trains; the frozen teacher is cast to bf16 whole
  compile: true          torch.compile (inductor): the frozen teacher with weights folded in ("freezing")
  compile_student: auto  torch.compile of the student's training step: 17-20 % faster steps on a CPU for
                         ~45 s of compilation, so auto compiles runs of at least 2,000 optimizer steps
  attention: auto        timm's explicit attention when training on a CPU, where the fused kernel's backward
                         is slower; fused scaled-dot-product attention everywhere else
  fused_optimizer: true  AdamW's fused kernel: one pass over all parameters instead of one per tensor

Inference (``deitctl eval`` / ``bench``) uses the same rules on a model that no longer trains: it is cast to
bf16 whole (no fp32 master weights to keep, no per-op casts) and, with ``--compile``, frozen and compiled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deitctl.console import log

if TYPE_CHECKING:
    import torch
    from torch import nn

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run in hardware (else bf16 is emulated and slower than fp32)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where native, else fp16 on a GPU and fp32 on a CPU; other names pass through."""
    if precision != "auto":
        return precision
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def dtype_of(precision: str) -> torch.dtype:
    import torch

    return getattr(torch, DTYPES[precision])


# ----------------------------------------------------------------------------------------- attention
def resolve_attention(setting: str, device: torch.device) -> str:
    """``auto`` → ``math`` when training on a CPU: there the fused kernel's backward took 1.35× longer
    per DeiT-Ti step than plain q·kᵀ → softmax → ·v (benchmarks/bench_train.py); ``fused`` elsewhere."""
    if setting != "auto":
        return setting
    return "math" if device.type == "cpu" else "fused"


def set_attention(model: nn.Module, kind: str) -> None:
    """Switch every timm attention block between ``fused`` (F.scaled_dot_product_attention) and ``math``."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = kind == "fused"


# ------------------------------------------------------------------------------------------- compile
COMPILE_STUDENT_MIN_STEPS = 2000  # measured break-even: ~500 steps of DeiT-Ti at 224 px, ~2,200 at 28 px


def resolve_compile_student(setting: bool | str, total_steps: int) -> bool:
    """``auto`` → compile when the whole run (not what is left of it: a resumed run decides alike) is long
    enough to pay back the one-time compilation."""
    if setting == "auto":
        return total_steps >= COMPILE_STUDENT_MIN_STEPS
    return bool(setting)


def compile_in_place(model: nn.Module, frozen: bool = False) -> None:
    """``nn.Module.compile``: the module keeps its type, parameters and state-dict keys (checkpoints,
    ``accelerate.unwrap_model`` and DDP see the same model); only its ``__call__`` is compiled.

    ``frozen``: a model that never trains again (teacher, inference) gets its weights folded in as
    constants ("freezing"), which lets inductor fuse conv+BN and pre-pack weights for oneDNN.
    """
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPUs
    model.compile(options={"freezing": True} if frozen else None)


def uncompile(model: nn.Module) -> None:
    """Undo :func:`compile_in_place` (torch keeps the compiled call in this attribute)."""
    model._compiled_call_impl = None


@contextlib.contextmanager
def eager(model: nn.Module):
    """Run a compiled module eagerly for a while (evaluation between epochs of a compiled training step
    would otherwise compile a second graph for eval mode, and a third for the last, smaller batch)."""
    saved = getattr(model, "_compiled_call_impl", None)
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = saved


def first_call(model: nn.Module, call: Callable[[], Any], what: str) -> bool:
    """Run the first, compiling call now (not inside the first timed step); fall back to eager on failure.

    torch.compile needs a C++ compiler on a CPU and cannot trace every model; a run should not die
    for a speed-up, so a failure costs a note and the eager speed. Returns True when compiled.
    """
    try:
        call()
        return True
    except Exception as e:  # inductor raises many kinds (missing compiler, unsupported op, ...)
        uncompile(model)
        reason = " ".join(str(e).split())[:160]
        log(f"[yellow]note:[/] torch.compile failed for the {what} ({type(e).__name__}: {reason}); it runs "
            "eagerly (slower). Turn compilation off with --no-compile to skip the attempt")
        return False


@contextlib.contextmanager
def preserved_rng():
    """A warm-up step draws random numbers (drop-path); the run must not see that it happened."""
    from deitctl import checkpoint

    state = checkpoint.rng_state()
    try:
        yield
    finally:
        checkpoint.set_rng_state(state)


# ------------------------------------------------------------------------------------------ inference
def predictor(model: nn.Module, precision: str, device: torch.device, compile_model: bool = False
              ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """images → (fused, class-head, distillation-head) float32 logits, for a model that will not train again.

    The model is cast to the precision's dtype in place (pure bf16 inference was 1.4× faster than
    autocast for DeiT-Ti on a CPU) and, with ``compile_model``, frozen and compiled. A batch smaller
    than the first one (the last of a loader) is padded to its size, so a compiled model is not
    compiled a second time for one batch.
    """
    import torch
    from torch import nn

    from deitctl.evaluate import head_logits

    dtype = dtype_of(precision)
    model.eval().to(device=device, dtype=dtype)

    class Heads(nn.Module):  # one module to compile: forward_features and both heads of a distilled model
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> Any:
            return head_logits(self.net, x)

    heads = Heads()
    if compile_model:
        compile_in_place(heads, frozen=True)
    size: dict[str, int] = {}

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        n = images.shape[0]
        full = size.setdefault("batch", n)
        x = images.to(device=device, dtype=dtype, non_blocking=True)
        if compile_model and n < full:
            x = torch.cat([x, x.new_zeros((full - n, *x.shape[1:]))])
        out = heads(x)
        return tuple(None if t is None else t[:n].float() for t in out)  # type: ignore[return-value]

    if compile_model:
        run = _with_fallback(run, heads)
    return run


def _with_fallback(run: Callable, heads: nn.Module) -> Callable:
    """The first call compiles; when compilation fails, the same batch is run eagerly and so are the rest."""
    state = {"first": True}

    def guarded(images: torch.Tensor) -> Any:
        if not state["first"]:
            return run(images)
        state["first"] = False
        result: dict[str, Any] = {}
        if first_call(heads, lambda: result.setdefault("out", run(images)), "model"):
            return result["out"]
        return run(images)

    return guarded
