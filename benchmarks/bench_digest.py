"""The teacher-output store's per-step input digest at ImageNet shape, against the float64 sums it replaced.

A run reading (or writing) the store fingerprints every teacher input batch; on a CPU that pass competes with the
training step. This times ``teacher_store.input_digest`` on a random 256×3×224×224 batch against the former digest
(three float64 sums over the batch and a hash of 4,096 evenly spaced values), taking turns ``--repeats`` times, and
prints ms per batch and the ratio.

    PYTHONPATH=benchmarks:. .venv/bin/python benchmarks/bench_digest.py [--repeats 7] [--batch 256]
"""

from __future__ import annotations

import argparse
import hashlib
import time


def float64_digest(x):  # the digest of store format 1, kept here as the baseline
    import torch

    per_sample = x.reshape(x.shape[0], -1).sum(dim=1, dtype=torch.float64)
    weights = torch.arange(1, x.shape[0] + 1, dtype=torch.float64) / x.shape[0]
    sums = torch.stack([per_sample.sum(), (per_sample * weights).sum(), x.abs().sum(dtype=torch.float64)])
    sample = x.reshape(-1)[:: max(1, x.numel() // 4096)].contiguous()
    return sums, hashlib.blake2b(sample.view(torch.uint8).numpy(), digest_size=8).digest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()

    import torch
    from machine import header, ratio_table

    from deitctl.training.teacher_store import input_digest

    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    variants = {"float64 sums (format 1)": float64_digest, "int32 row/column sums (format 2)": input_digest}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, digest in variants.items():
            start = time.perf_counter()
            digest(x)
            times[name].append((time.perf_counter() - start) * 1e3)
    print(header())
    print(ratio_table(f"input digest, {args.batch}×3×224×224 fp32", "ms / batch", times, lower_is_better=True))


if __name__ == "__main__":
    main()
