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


def ratio_table(title: str, unit: str, values: dict[str, list[float]], lower_is_better: bool = False) -> str:
    """A markdown table of each variant's median against the first variant's (the baseline)."""
    import statistics

    medians = {name: statistics.median(v) for name, v in values.items()}
    base = next(iter(medians.values()))
    repeats = min(len(v) for v in values.values())
    lines = [f"| {title} | {unit} (median of {repeats}) | vs {next(iter(medians))} |", "|---|---:|---:|"]
    for name, m in medians.items():
        lines.append(f"| {name} | {m:.1f} | {(base / m if lower_is_better else m / base):.2f}× |")
    return "\n".join(lines)


def runs_line(values: dict[str, list[float]]) -> str:
    """Every run of every variant, under its table: how far apart the repeats were."""
    return "runs: " + "; ".join(f"{name} " + ", ".join(f"{v:.0f}" for v in vs) for name, vs in values.items())


if __name__ == "__main__":
    print(header())
