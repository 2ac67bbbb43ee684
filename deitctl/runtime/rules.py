"""The speed rules, as data: what each ``auto`` lever becomes on each machine class, and the measurement behind it.

A lever that wins on one processor can lose on another — compiling an fp32 DeiT-Ti was reported 1.15×
slower than eager on a Zen 4 EPYC, and measured 1.06× faster on the Zen 5 one this project runs on — so
the rules are keyed by what the hardware has (``runtime.hardware.Cpu.kind``: AMX, AVX512-BF16, AVX-512,
AVX2; a CUDA GPU), never by a timing taken at run time, and every run prints the choice and the class it
was made for. A class nobody has measured gets the conservative choice (fp32, nothing compiled frozen,
the explicit attention every measured CPU trained faster with) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Rules:
    """What ``auto`` means on one machine class."""

    kind: str
    bf16: bool  # bf16 arithmetic in hardware: ``precision: auto`` → bf16 (else emulated, slower than fp32)
    compile_frozen: tuple[str, ...]  # formats in which a compiled frozen model (teacher) beat the eager one
    train_attention: str  # "math" (q·kᵀ → softmax → ·v) or "fused" (scaled_dot_product_attention)
    source: str  # where the choices were measured


CPU_RULES = {r.kind: r for r in (
    # 2 cores of an Intel Xeon with AMX: benchmarks/bench_train.py (bf16 3.3×, compiled frozen bf16 teacher 1.46×,
    # math attention 1.06-1.25×), bench_infer.py (bf16 cast 3.1×, compiled 4.0× eager fp32). A compiled fp32
    # teacher was not timed there; it stays compiled, as it was before these rules.
    Rules("amx", bf16=True, compile_frozen=("bf16", "fp32"), train_attention="math",
          source="measured on an Intel Xeon with AMX"),
    # 2 cores of an AMD EPYC (Zen 5): benchmarks/bench_frozen.py — compiled vs eager, fp32: resnet10t/4 1.51×,
    # RegNetY-1.6GF 1.26×, DeiT-Ti 1.06×; bf16: 1.09×, 1.36×, 1.14× — and bench_main_job.py (training levers)
    Rules("avx512-bf16", bf16=True, compile_frozen=("bf16", "fp32"), train_attention="math",
          source="measured on an AMD EPYC with AVX512-BF16"),
    # 2 cores of an AMD EPYC (Zen 3, AVX2 only): bf16 is emulated (bench_frozen.py: 0.11× fp32 eager for both
    # teachers); a compiled fp32 teacher wins — RegNetY-1.6GF 1.25×, resnet10t/4 1.04× alone, and in the main job's
    # student step (bench_main_job.py) 592 vs 525 img/s (1.13×) — and the student's levers each gave 1-7 %:
    # math attention, fused AdamW, fast augment, the compiled student (docs/performance.md, "AVX2"). Not rules, but
    # measured there too: the channels-last teacher (1.64x / 1.10x eager), one loader worker per 1-thread run (0 or
    # 2: 0.78x / 0.86x), two 1-thread runs side by side rather than one 2-thread run (1.39x).
    Rules("avx2", bf16=False, compile_frozen=("fp32",), train_attention="math",
          source="measured on an AMD EPYC with AVX2 only"),
    # Not measured: bf16 is emulated there (slower than fp32); nothing compiled that could be slower.
    *(Rules(kind, bf16=False, compile_frozen=(), train_attention="math", source="not measured here; conservative")
      for kind in ("avx512", "other")),
)}


# bf16 on a GPU depends on its compute capability: precision.native_bf16 asks torch.cuda.
GPU_RULES = Rules("cuda", bf16=True, compile_frozen=("bf16", "fp16", "fp32"), train_attention="fused",
                  source="CUDA, not measured by this project")


def rules_for(device: torch.device) -> Rules:
    """The rules of the machine class ``device`` belongs to."""
    from deitctl.runtime.hardware import cpu

    if device.type == "cuda":
        return GPU_RULES
    return CPU_RULES[cpu().kind]


def resolve_compile_frozen(setting: bool | str, precision: str, device: torch.device) -> bool:
    """``auto`` → compile a frozen model (the teacher) only in a number format where that measured faster
    than eager on this machine class."""
    if setting == "auto":
        return precision in rules_for(device).compile_frozen
    return bool(setting)


def describe(device: torch.device) -> str:
    """The machine and the rules chosen for it, as the run's ``speed on …`` line starts."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (rules: CUDA)"
    r = rules_for(device)
    return f"CPU class {r.kind} (rules {r.source})"
