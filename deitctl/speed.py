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


def fresh_compiler() -> None:
    """Start a run with an empty compiler cache. dynamo keeps at most 8 compiled versions per code object
    and every ``nn.Module.compile``d module shares one (``Module._call_impl``): the 9th module compiled in
    a process (a benchmark's runs, a notebook's) would silently run eagerly."""
    import torch

    torch.compiler.reset()


def compile_in_place(model: nn.Module) -> None:
    """``nn.Module.compile``: the module keeps its type, parameters and state-dict keys (checkpoints,
    ``accelerate.unwrap_model`` and DDP see the same model); only its ``__call__`` is compiled, at its
    first call (see :func:`first_call`)."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPUs
    model.compile()


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


def first_call(model: nn.Module, call: Callable[[], Any], what: str, frozen: bool = False) -> bool:
    """Run the first, compiling call now (not inside the first timed step); fall back to eager on failure.

    ``frozen``: a model that never trains again (teacher, inference) is compiled with its weights folded
    in as constants ("freezing"), so inductor fuses conv+BN+activation and pre-packs weights for oneDNN
    (the RegNetY-16GF teacher ran 1.5× faster). The switch must be on while the call traces: passed as
    ``torch.compile(options=...)`` it never took effect (torch 2.15), and left on globally it would
    reach every other compilation of the process.

    torch.compile needs a C++ compiler on a CPU and cannot trace every model; a run should not die
    for a speed-up, so a failure costs a note and the eager speed. Returns True when compiled.
    """
    from torch._inductor import config

    try:
        with config.patch(freezing=frozen):
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
class Predictor:
    """images → (fused, class-head, distillation-head) float32 logits, for a model that will not train again.

    The model is cast to the precision's dtype in place (pure bf16 inference ran 1.4× faster than autocast
    for DeiT-Ti on a CPU) and, with ``compile_model``, frozen and compiled; its first call compiles, or
    finds it cannot and runs eagerly from then on. A batch smaller than the first (a loader's last) is
    padded to the first one's size, so a compiled model is not compiled a second time for one batch.
    """

    def __init__(self, model: nn.Module, precision: str, device: torch.device, compile_model: bool = False) -> None:
        from torch import nn

        from deitctl.evaluate import head_logits

        class Heads(nn.Module):  # one module to compile: the features and both heads of a distilled model
            def __init__(self) -> None:
                super().__init__()
                self.net = model

            def forward(self, x: torch.Tensor) -> Any:
                return head_logits(self.net, x)

        self.device, self.dtype, self.compiled = device, dtype_of(precision), compile_model
        model.eval().to(device=device, dtype=self.dtype)
        self.heads, self.batch = Heads(), 0
        if compile_model:  # one predictor per evaluation or benchmark row: the run's only compiled module
            fresh_compiler()
            compile_in_place(self.heads)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if not self.batch:
            self.batch = images.shape[0]
            if self.compiled:
                out: dict[str, Any] = {}
                self.compiled = first_call(self.heads, lambda: out.update(logits=self._run(images)), "model",
                                           frozen=True)
                if self.compiled:
                    return out["logits"]
        return self._run(images)

    def _run(self, images: torch.Tensor) -> Any:
        import torch

        n = images.shape[0]
        x = images.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.compiled and n < self.batch:
            x = torch.cat([x, x.new_zeros((self.batch - n, *x.shape[1:]))])
        return tuple(None if t is None else t[:n].float() for t in self.heads(x))
