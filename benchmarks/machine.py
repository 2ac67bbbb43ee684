"""The header every benchmark table prints: which machine, which features, which library versions.

Ratios only compare within one run; this says which machine class a run's ratios belong to.
"""

from __future__ import annotations

import importlib.metadata


def header() -> str:
    import torch

    from deitctl.runtime.hardware import cpu
    from deitctl.runtime.precision import native_bf16

    c = cpu()
    versions = []
    for name in ("torch", "timm", "onnxruntime"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} —")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    bf16 = "native" if native_bf16(torch.device("cpu")) else "emulated"
    return (f"machine: {c.describe()}; class {c.kind}; bf16 on the CPU {bf16}; {gpu}\n"
            f"software: {', '.join(versions)}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    print(header())
