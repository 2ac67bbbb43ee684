"""What the processor computes fast: the features the speed rules decide by, read from the machine itself.

The same lever wins on one machine and loses on another: a bf16 matmul runs ~2.2 TFLOP/s on 2 cores of
an Intel Xeon with AMX and ~0.35 TFLOP/s on an AMD EPYC with AVX512-BF16 but no AMX (2048² matmul, 2
threads: bf16 345 vs fp32 132 GFLOP/s) — still ahead of fp32 there, but ~6× behind AMX. So deitctl decides by what the hardware has (AMX, AVX512-BF16, VNNI, AVX2; the CUDA
capability), not by what one machine measured, and prints what it chose.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Cpu:
    model: str
    amx: bool  # Intel AMX tiles for bf16 (Sapphire Rapids and newer): bf16 matmuls ~6× fp32
    avx512_bf16: bool  # bf16 dot products in AVX-512 (AMD Zen 4/5, Cooper Lake): bf16 ~2.6× fp32
    vnni: bool  # int8 dot products (AVX512-VNNI / AVX-VNNI): int8 GEMMs ~2-4× fp32
    avx512: bool
    avx2: bool
    threads: int

    @property
    def kind(self) -> str:
        """The machine class the rules know: amx, avx512-bf16, avx512, avx2 or other."""
        if self.amx:
            return "amx"
        if self.avx512_bf16:
            return "avx512-bf16"
        return "avx512" if self.avx512 else "avx2" if self.avx2 else "other"

    def describe(self) -> str:
        feats = [name for name, on in (("AMX", self.amx), ("AVX512-BF16", self.avx512_bf16), ("VNNI", self.vnni),
                                       ("AVX-512", self.avx512), ("AVX2", self.avx2)) if on]
        return f"{self.model} ({', '.join(feats) or 'no vector extensions found'}; {self.threads} threads)"


@functools.cache
def cpu() -> Cpu:
    flags, model = set(), platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
    except OSError:
        pass
    import torch

    return Cpu(model=model, amx="amx_bf16" in flags or "amx_tile" in flags,
               avx512_bf16="avx512_bf16" in flags, vnni=bool({"avx512_vnni", "avx_vnni"} & flags),
               avx512="avx512f" in flags, avx2="avx2" in flags,
               threads=int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    import torch

    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None
