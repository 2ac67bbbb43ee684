"""Training throughput of `deitctl train` against a plain eager fp32 PyTorch loop, side by side.

Both train the same models on the same data: a DeiT-Ti-shaped distilled student (depth 12, dim 192,
3 heads, patch 4) on Fashion-MNIST at 28 px with the full DeiT augmentation (RandAugment, Mixup/CutMix,
random erasing) and hard distillation from a ResNet-18 teacher. The baseline is the loop a user would
write by hand: fp32, eager, timm models, timm Mixup, AdamW. It also reports where the time goes
(data / teacher / student forward+backward / optimizer), for the baseline and for deitctl's settings.

    python benchmarks/bench_train.py                 # ~5 min on 2 cores
    python benchmarks/bench_train.py --samples 512 --repeats 3 --batch-size 64

Prints medians over repeats and the ratio ours / baseline; never run as a test (machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

SETS = ["rand_augment=rand-m9-mstd0.5-inc1", "mixup=0.8", "cutmix=1.0", "reprob=0.25", "warmup_epochs=0",
        "eval_every=0"]


def make_teacher(out: Path) -> Path:
    import timm

    from deitctl.modelref import save_model_dir

    save_model_dir(timm.create_model("resnet18", in_chans=1, num_classes=10), out, mean=(0.2860,), std=(0.3530,))
    return out


def run_deitctl(teacher: Path, samples: int, batch: int, workers: int, precision: str, tmp: Path) -> float:
    """img/s of the second epoch of `deitctl train` (the first one warms up oneDNN kernels)."""
    from deitctl.runsetup import RunOptions
    from deitctl.train import train

    out = tmp / f"run-{time.time_ns()}"
    sets = [*SETS, f"num_workers={workers}", f"precision={precision}"]
    train("fashion-deit-ti-distilled", RunOptions(out=out, sets=sets, teacher=str(teacher), epochs=2,
                                                  batch_size=batch, max_train_samples=samples, max_eval_samples=64))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["img_per_s"]


def run_plain(teacher_dir: Path, samples: int, batch: int, workers: int, precision: str) -> tuple[float, dict]:
    """The hand-written loop; returns img/s and seconds per phase, over one epoch after a warm-up epoch."""
    import timm
    import torch.nn.functional as F
    from timm.data import Mixup
    from torch.utils.data import DataLoader

    from deitctl.data import load_split, subset
    from deitctl.recipes import load_recipe
    from deitctl.samples import collate, with_transform
    from deitctl.transforms import train_transform

    recipe = load_recipe("fashion-deit-ti-distilled", SETS)
    split = subset(load_split("fashion-mnist", "train"), samples, 0)
    loader = DataLoader(with_transform(split, train_transform(recipe), 1), batch_size=batch, shuffle=True,
                        drop_last=True, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0)
    student = timm.create_model("deit_tiny_distilled_patch16_224", img_size=28, patch_size=4, in_chans=1,
                                num_classes=10, drop_path_rate=0.1)
    student.set_distilled_training(True)
    teacher = timm.create_model(f"local-dir:{teacher_dir}", pretrained=True).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.05)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    phases = dict.fromkeys(("data", "teacher", "student fwd+bwd", "optimizer"), 0.0)
    seen, start = 0, 0.0
    for epoch in range(2):
        if epoch == 1:
            phases = dict.fromkeys(phases, 0.0)
            seen, start = 0, time.perf_counter()
        t = time.perf_counter()
        for x, y in loader:
            x, y = mixup(x, y)
            t1 = time.perf_counter()
            with torch.no_grad(), amp:
                t_logits = teacher(x)
            t2 = time.perf_counter()
            with amp:
                cls, dist = student(x)
                loss = 0.5 * torch.sum(-y * F.log_softmax(cls, -1), -1).mean() + 0.5 * F.cross_entropy(
                    dist, t_logits.argmax(-1))
            loss.backward()
            t3 = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t4 = time.perf_counter()
            for key, dt in zip(phases, (t1 - t, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key] += dt
            seen += x.shape[0]
            t = time.perf_counter()
    return seen / (time.perf_counter() - start), phases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1536)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", default="auto", help="deitctl's precision (auto = bf16 where supported)")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        teacher = make_teacher(tmp / "teacher")
        ours, base, base_phases, ours_phases = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
            rate, phases = run_plain(teacher, args.samples, args.batch_size, args.workers, "fp32")
            base.append(rate)
            base_phases.append(phases)
            ours.append(run_deitctl(teacher, args.samples, args.batch_size, args.workers, args.precision, tmp))
            ours_phases.append(run_plain(teacher, args.samples, args.batch_size, args.workers, "bf16")[1])
    b, o = statistics.median(base), statistics.median(ours)
    print(f"\nstudent DeiT-Ti⚗ (patch 4, 28 px) + ResNet-18 teacher, hard distillation, full augmentation, "
          f"batch {args.batch_size}, {args.samples} samples, {torch.get_num_threads()} threads, {args.repeats} runs")
    print(f"{'loop':34s} {'median img/s':>12s}   runs")
    print(f"{'plain eager fp32 PyTorch + timm':34s} {b:12.1f}   {', '.join(f'{v:.1f}' for v in base)}")
    print(f"{'deitctl train':34s} {o:12.1f}   {', '.join(f'{v:.1f}' for v in ours)}")
    print(f"ratio deitctl / plain: {o / b:.2f}x\n")
    print("where the time goes (median seconds per epoch, same loop instrumented):")
    print(f"{'phase':18s} {'fp32 eager':>11s} {'bf16 (ours)':>12s}")
    for key in base_phases[0]:
        fp32 = statistics.median(ph[key] for ph in base_phases)
        bf16 = statistics.median(ph[key] for ph in ours_phases)
        print(f"{key:18s} {fp32:11.2f} {bf16:12.2f}")


if __name__ == "__main__":
    main()
