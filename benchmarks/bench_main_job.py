"""The main job's training speed, levers on against levers off, side by side in one run.

Trains the main job's DeiT⚗ student (`fashion-deit-ti-distilled`, hard distillation from a teacher run)
for one epoch on a seeded subset of Fashion-MNIST, through `deitctl train` itself, alternating the
variants ``--repeats`` times so drifting machine load hits them alike, and prints the median training
img/s (summary.json's ``train_img_per_s``) of each and its ratio to "levers off":

  levers off         fp32, torchvision augmentation ops, nothing compiled, foreach AdamW, fused SDPA
  defaults           what `deitctl train` chooses on this machine (printed in its `speed on …` line)
  + compiled student what the main job's 4,680-step runs also get (compilation happens before the timing)

    .venv/bin/python benchmarks/bench_main_job.py runs/main/fashion-teacher [--samples 4000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "levers off": ["--precision", "fp32", "--no-compile", "--set", "fast_augment=false", "--set",
                   "fused_optimizer=false", "--set", "attention=fused", "--set", "teacher_precision=fp32"],
    "defaults": [],
    "defaults + compiled student (auto: runs of >= 2,000 steps, as the main job's)": ["--set", "compile_student=true"],
}


def run(teacher: str, samples: int, extra: list[str], out: Path) -> float:
    cmd = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti-distilled", "--teacher", teacher,
           "--out", str(out), "--overwrite", "--epochs", "1", "--max-train-samples", str(samples),
           "--max-eval-samples", "64", "--set", "warmup_epochs=0", *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / "summary.json").read_text())["train_img_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="the main job's teacher run (runs/main/fashion-teacher)")
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from machine import header, ratio_table

    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, extra in VARIANTS.items():
                rates[name].append(run(args.teacher, args.samples, extra, Path(tmp) / "run"))
    print(header())
    print(ratio_table("main job student (DeiT⚗ + teacher), 28 px, batch 64", "img/s", rates))

if __name__ == "__main__":
    main()
