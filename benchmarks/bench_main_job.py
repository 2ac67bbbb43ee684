"""The main job's training speed: every lever off, the defaults, and each lever switched alone, side by side.

Trains the main job's DeiT⚗ student (`fashion-deit-ti-distilled`, hard distillation from a teacher run)
for one epoch on a seeded subset of Fashion-MNIST, through `deitctl train` itself, and prints the median
training img/s (summary.json's ``train_img_per_s``) of each variant and its ratio to "levers off". Runs
go two at a time, one thread each — as `scripts/main.sh` trains its small models — and the pairs rotate
every repeat, so neither drifting load nor a partner favours one variant:

  levers off            fp32, torchvision augmentation ops, nothing compiled, foreach AdamW, fused SDPA
  main-job defaults     what `deitctl train` chooses here, with the student compiled as in the main job's
                        4,680-step runs (compilation happens before the timing)
  … <lever> off         the defaults with that one lever switched back
  … loader workers      the defaults with no loader worker, or two (the main job's recipes have one)

    .venv/bin/python benchmarks/bench_main_job.py runs/main/fashion-teacher [--samples 3000] [--repeats 5]

``--threads`` times the threads-per-process lever instead: the machine's total img/s with two runs side by
side at one thread each (the sum of their rates) against one run alone at two threads, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

Run = tuple[str, subprocess.Popen, Path]  # a variant's name, its process, its run directory
OFF = {  # the switch that turns each lever off
    "bf16 (→ --precision fp32)": ["--precision", "fp32"],
    "compiled student (→ eager)": ["--set", "compile_student=false"],
    "teacher compile rule (→ compile=false)": ["--set", "compile=false"],
    "math attention (→ fused SDPA)": ["--set", "attention=fused"],
    "fast augment (→ torchvision ops)": ["--set", "fast_augment=false"],
    "fused AdamW (→ foreach)": ["--set", "fused_optimizer=false"],
}
# Every variant computes its teacher's outputs (the store off), but the one that reads them from a store a run
# before the timing wrote; and where a class's rules leave the teacher eager, a variant compiles it.
STORE_OFF = ["--set", "teacher_store=false"]
MAIN_JOB = ["--set", "compile_student=true"]  # auto compiles runs of >= 2,000 steps; this epoch is shorter
READ = "… teacher outputs read from the store"
VARIANTS = {
    "levers off": ["--precision", "fp32", "--no-compile", "--set", "fast_augment=false", "--set",
                   "fused_optimizer=false", "--set", "attention=fused", "--set", "teacher_precision=fp32", *STORE_OFF],
    "main-job defaults": [*MAIN_JOB, *STORE_OFF],
    **{f"… {name} off": [*MAIN_JOB, *STORE_OFF, *switch] for name, switch in OFF.items()},
    "… teacher compiled (→ compile=true)": [*MAIN_JOB, *STORE_OFF, "--set", "compile=true"],
    "… no loader worker (→ num_workers=0)": [*MAIN_JOB, *STORE_OFF, "--set", "num_workers=0"],
    "… 2 loader workers (→ num_workers=2)": [*MAIN_JOB, *STORE_OFF, "--set", "num_workers=2"],
    READ: MAIN_JOB,
}


def variants_for_this_machine() -> list[str]:
    """The variants that differ from the defaults here: no bf16 switch where bf16 is emulated (runs are fp32
    already), and of the teacher's two compile switches the one the class's rule does not already make."""
    import torch

    from deitctl.runtime.precision import native_bf16
    from deitctl.runtime.rules import resolve_compile_frozen

    cpu = torch.device("cpu")
    drop = set() if native_bf16(cpu) else {"… bf16 (→ --precision fp32) off"}
    compiled = resolve_compile_frozen("auto", "fp32", cpu)  # the main job's teacher is fp32 (hard labels)
    drop.add("… teacher compiled (→ compile=true)" if compiled else "… teacher compile rule (→ compile=false) off")
    return [name for name in VARIANTS if name not in drop]


def start(name: str, teacher: str, samples: int, extra: list[str], out: Path, threads: int = 1) -> Run:
    cmd = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti-distilled", "--teacher", teacher,
           "--out", str(out), "--overwrite", "--epochs", "1", "--max-train-samples", str(samples),
           "--max-eval-samples", "64", "--set", "warmup_epochs=0", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return name, proc, out


def finish(runs: list[Run]) -> list[dict]:
    """Each run's summary.json once it ends; the first failure's error ends the benchmark."""
    summaries = []
    for name, proc, out in runs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{err.decode()[-2000:]}")
        summaries.append(json.loads((out / "summary.json").read_text()))
    return summaries


def run_pair(teacher: str, samples: int, names: list[str], tmp: Path, store_filled: bool = True) -> dict[str, float]:
    rates = {}
    for name, summary in zip(names, finish([start(name, teacher, samples, VARIANTS[name], tmp / f"run{i}")
                                            for i, name in enumerate(names)]), strict=True):
        rates[name] = summary["train_img_per_s"]
        computed = (summary.get("teacher_outputs") or {}).get("computed")
        if name == READ and store_filled and computed:
            raise SystemExit(f"{name} computed {computed} teacher outputs: the store did not serve them")
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="the main job's teacher run (runs/main/fashion-teacher)")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", action="store_true", help="time two 1-thread runs against one 2-thread run")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT",
                   help="these variants only, the first the baseline (an even count keeps every pair full)")
    args = p.parse_args()
    from machine import header, ratio_table, runs_line

    if args.threads:
        return compare_threads(args.teacher, args.samples, args.repeats)

    names = args.only or variants_for_this_machine()
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DEITCTL_CACHE"] = str(Path(tmp) / "cache")  # the store READ reads, written now, untimed
        run_pair(args.teacher, args.samples, [READ], Path(tmp), store_filled=False)
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate the partners every repeat
            for i in range(0, len(order), 2):
                for name, rate in run_pair(args.teacher, args.samples, order[i:i + 2], Path(tmp)).items():
                    rates[name].append(rate)
    print(header())
    print(ratio_table("main-job student (DeiT⚗ + fp32 teacher), 28 px, batch 64, two runs side by side at one "
                      "thread each", "img/s", rates))
    print(runs_line(rates))


def compare_threads(teacher: str, samples: int, repeats: int) -> None:
    """Total img/s of the machine: one run at two threads, then two runs side by side at one thread each."""
    from machine import header, ratio_table, runs_line

    rates: dict[str, list[float]] = {"one run, 2 threads": [], "two runs side by side, 1 thread each (sum)": []}
    defaults = VARIANTS["main-job defaults"]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, threads, count in (("one run, 2 threads", 2, 1),
                                         ("two runs side by side, 1 thread each (sum)", 1, 2)):
                runs = [start(name, teacher, samples, defaults, Path(tmp) / f"t{i}", threads) for i in range(count)]
                rates[name].append(sum(summary["train_img_per_s"] for summary in finish(runs)))
    print(header())
    print(ratio_table("main-job student (DeiT⚗ + fp32 teacher), the machine's total", "img/s", rates))
    print(runs_line(rates))


if __name__ == "__main__":
    main()
