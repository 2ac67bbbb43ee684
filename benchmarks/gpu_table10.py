"""Part (a) of the GPU check: `deitctl bench` rows for the paper's Table 10 models, beside the paper's figures.

    python benchmarks/gpu_table10.py --out OUT [--budget-s 190] [--no-compile] [--models ...] [--batch-sizes 256,1]
    python benchmarks/gpu_table10.py --render OUT/table10.jsonl      # the markdown table of rows already written

Each row is ``deitctl.app.bench.run`` — the function `deitctl bench` calls, with its Predictor (weights cast
whole to the precision, compiled frozen) and its timing (warm-up, then the median of ``--repeats`` runs) — for
one (model, batch, precision). One row at a time, in one process, rather than one CLI call per model, because a
lease is short and compile time on the device is unknown: every finished row is appended to table10.jsonl at
once (a timeout keeps it), inductor's caches carry over from row to row, and rows are taken in order of what
they are worth (batch 256 before batch 1, bf16 before fp32) and skipped, with a note, once the next one would
overrun ``--budget-s``. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224", "deit_base_patch16_384")
# The paper's figures (docs/performance.md, "GPUs"; shared/reference/deit-paper.md): Table 10 on one V100 at batch
# 32 in fp16 (AMP) and fp32, and Table 5's largest-batch throughput (fp16 AMP there).
PAPER: dict[str, tuple[str, float, float, float]] = {
    "deit_tiny_patch16_224": ("DeiT-Ti", 2363, 2386, 2536),
    "deit_small_patch16_224": ("DeiT-S", 1693, 942, 940),
    "deit_base_patch16_224": ("DeiT-B", 745, 304, 292),
    "deit_base_patch16_384": ("DeiT-B↑384", 193, 89, 85.9),
}


def plan(models: list[str], batch_sizes: list[int], precisions: list[str]) -> list[tuple[str, int, str]]:
    """Every (model, batch, precision), most useful first: batch sizes and precisions in the order given,
    each over all models, so a budget cut drops whole columns of least interest rather than a model."""
    return [(m, b, p) for b in batch_sizes for p in precisions for m in models]


def bench_row(model: str, batch: int, precision: str, compile_model: bool, repeats: int) -> dict[str, Any]:
    """One `deitctl bench` row, plus the wall time it took (compilation included: what the next lease plans on)."""
    from deitctl.app.bench import BenchRequest, run

    start = time.perf_counter()
    (row,) = run(BenchRequest(model, [batch], [precision], compile_model=compile_model, repeats=repeats))
    row["wall_s"] = round(time.perf_counter() - start, 1)
    return row


def measure(args: argparse.Namespace) -> int:
    """Run the plan under the budget; returns 1 when a row failed (the others still run)."""
    import torch
    from machine import header

    print(header(), flush=True)
    out = args.out / "table10.jsonl"
    out.unlink(missing_ok=True)
    started, longest, failed, done = time.perf_counter(), 0.0, 0, 0
    for model, batch, precision in plan(args.models, args.batch_sizes, args.precisions):
        left = args.budget_s - (time.perf_counter() - started)
        base = {"model": model, "batch_size": batch, "precision": precision, "compile": args.compile}
        if left < longest * 1.2:  # the next row would likely be cut off by the part's timeout: say so instead
            row: dict[str, Any] = {**base, "skipped": f"budget: {left:.0f} s left, rows take up to {longest:.0f} s"}
        else:
            try:
                row = bench_row(model, batch, precision, args.compile, args.repeats)
                done += 1
                if done > 1:  # the first row also pays the cold start (imports, inductor's first use)
                    longest = max(longest, row["wall_s"])
            except Exception as e:  # one row's failure (memory, a compile error) must not cost the others
                failed += 1
                row = {**base, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(render([json.loads(x) for x in out.read_text().splitlines()]))
    return 1 if failed else 0


def render(rows: list[dict[str, Any]]) -> str:
    """Measured img/s beside the paper's: bf16 rows beside its fp16 (AMP) column, fp32 beside fp32.

    The paper timed batch 32 (Table 10) and the largest batch that fit (Table 5) on a V100; these rows are
    batch 1 and 256 on whatever GPU ran them, so the columns say which machine and batch each figure is from.
    """
    if not rows:
        return "not measured yet (no rows)"
    device = next((r["device"] for r in rows if "device" in r), "this GPU")
    lines = [f"| model | batch | precision | img/s on {device} | ms/batch | peak MiB | compiled | "
             "paper V100 BS 32 (fp16 AMP / fp32) | paper V100 largest batch |",
             "|---|---:|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        label, fp16, fp32, largest = PAPER.get(r["model"], (r["model"], None, None, None))
        paper = fp32 if r["precision"] == "fp32" else fp16
        if "img_per_s" in r:
            cells = [f"{r['img_per_s']:.0f}", f"{r['ms_per_batch']:.2f}", f"{r['peak_mem_mb']:.0f}",
                     "yes" if r["compile"] else "no"]
        else:
            cells = [r.get("skipped") or f"error: {r.get('error')}", "", "", ""]
        lines.append(f"| {label} | {r['batch_size']} | {r['precision']} | {' | '.join(cells)} | "
                     f"{'' if paper is None else f'{paper:g}'} | {'' if largest is None else f'{largest:g}'} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for table10.jsonl")
    p.add_argument("--render", type=Path, help="print the markdown table of this table10.jsonl and stop")
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 1])
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["bf16", "fp32"])
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager rows (the CPU dry run)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=190.0, help="start no row that would likely end after this")
    args = p.parse_args()
    if args.render:
        print(render([json.loads(x) for x in args.render.read_text().splitlines() if x.strip()]))
        return 0
    if args.out is None:
        p.error("--out is required to measure")
    args.out.mkdir(parents=True, exist_ok=True)
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
