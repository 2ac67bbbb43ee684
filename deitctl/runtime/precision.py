"""Which number format a model runs in, decided by what the hardware computes natively.

``auto`` means bf16 where the hardware has it (CPU AMX / AVX512-BF16, GPU Ampere+: ``runtime.rules``),
else fp16 on a GPU and fp32 on a CPU. Training autocasts the student; a model that will not train again
(a teacher, an evaluated model) is cast whole, which ran 1.4× faster than autocast for DeiT-Ti on a CPU.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: inference on a CPU only (runtime.quantize)
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def native_bf16(device: torch.device) -> bool:
    """True where bf16 arithmetic runs in hardware: a GPU of compute capability 8.0+, a CPU with AMX or
    AVX512-BF16 (``runtime.rules``). torch's own check (``mkldnn._is_mkldnn_bf16_supported``) also says
    yes on AVX-512 CPUs without bf16 instructions, where oneDNN emulates bf16 slower than fp32."""
    import torch

    from deitctl.runtime.rules import rules_for

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return rules_for(device).bf16


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where native, else fp16 on a GPU and fp32 on a CPU; other names pass through."""
    if precision != "auto":
        return precision
    if native_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def resolve_teacher_precision(setting: str, distillation_type: str, run_precision: str) -> str:
    """``auto`` → fp32 for hard distillation, the run's precision otherwise.

    Hard distillation trains on the teacher's argmax, and rounding flips it near ties: over an augmented
    epoch of the main job (benchmarks/teacher_precision.py) a bf16-cast teacher changed 0.43 % of the hard
    labels against fp32, bf16 autocast with batch norm in fp32 0.28 % — both over the 0.1 % we accept. A soft
    target moves continuously with rounding, so soft distillation keeps the run's (faster) precision.
    """
    if setting != "auto":
        return setting
    return "fp32" if distillation_type == "hard" else run_precision


def dtype_of(precision: str) -> torch.dtype:
    import torch

    return getattr(torch, DTYPES[precision])


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a precision name; fp16 is refused on the CPU (slow, inexact there) and int8 on
    a GPU. int8 has no autocast: ``runtime.predictor.Predictor`` quantizes the model itself."""
    import torch

    device_type = torch.device(device).type
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; use one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type != "cuda":
        raise UsageError(f"precision fp16 needs a CUDA GPU but this runs on the {device_type.upper()}; "
                         "use --precision bf16 or fp32")
    if precision == "int8" and device_type != "cpu":
        raise UsageError(f"precision int8 runs on the CPU (x86 VNNI) but this runs on the {device_type.upper()}; "
                         "use --precision bf16 or fp16 there")
    if precision in ("fp32", "int8"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)
