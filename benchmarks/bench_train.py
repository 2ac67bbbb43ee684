"""Training throughput of `deitctl train` against a plain eager fp32 PyTorch loop, side by side, with MFU.

Both train the same models on the same data: DeiT-Ti⚗ (deit_tiny_distilled_patch16_224) at 224 px on the
real Fashion-MNIST (converted to 3 channels and scaled up by the augmentation), with the full DeiT
augmentation (RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8 / CutMix 1.0 with label
smoothing, random erasing 0.25) and hard distillation from a RegNetY teacher (default regnety_160, the
paper's RegNetY-16GF; random weights, which speed does not depend on). The baseline is the loop a user
writes by hand: fp32, eager, timm models, timm Mixup, torch AdamW, the teacher under no_grad, the same
DataLoader. `deitctl train` runs with its defaults; the ablation turns its levers off one at a time.

Model FLOP utilisation: per image 6 × student GMACs (forward + backward) + 2 × teacher GMACs (forward),
× 1e9 × img/s, as a fraction of this machine's bf16 matmul peak (fp32 where bf16 is emulated), measured here.

    python benchmarks/bench_train.py                       # ~25 min on 2 cores
    python benchmarks/bench_train.py --repeats 5 --ablation --teacher regnety_016
    python benchmarks/bench_train.py --repeats 5 --samples 64 --store   # ~25 min on 2 AVX2 cores

Prints medians over interleaved repeats and ratios against the baseline; never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

RECIPE = "deit-ti-distilled"  # Table 9 (224 px, full augmentation, hard distillation), with the sets below
# the teacher computes in every timed run (the store would let every repeat after the first skip it: bench_main_job.py
# times that on its own)
SETS = ["warmup_epochs=0", "eval_every=0", "repeated_aug=0", "eval_split=test", "teacher_store=false"]
LEVERS = {  # what turns each lever off (or, for compile_student, on)
    "bf16 → fp32": "precision=fp32",
    "teacher compile → eager": "compile=false",
    "CPU math attention → fused SDPA": "attention=fused",
    "fused AdamW → foreach": "fused_optimizer=false",
    "student compile on (auto: runs of ≥ 2,000 steps)": "compile_student=true",
}
STORE = ("teacher_store=true",)  # the store on (SETS turns it off; the later override wins)
READ = "a later student: teacher outputs read from the store"


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 5) -> float:
    """FLOP/s of the best large square matmul: the ceiling MFU is measured against."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times))
    return best


def make_teacher(arch: str, out: Path) -> tuple[Path, float]:
    import timm

    from deitctl.models.inspect import count_gmacs
    from deitctl.models.store import save_model_dir

    model = timm.create_model(arch, num_classes=10)
    save_model_dir(model, out, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return out, count_gmacs(model, 224, 3)


def run_deitctl(teacher: Path, args: argparse.Namespace, tmp: Path, extra: tuple[str, ...] = ()) -> dict:
    """The second epoch's metrics row of `deitctl train` (the first one compiles and warms up), with the run's
    count of teacher outputs computed."""
    from deitctl.app.train import TrainRequest, run
    from deitctl.training.plan import RunOptions

    out = tmp / f"run-{time.time_ns()}"
    sets = [*SETS, f"num_workers={args.workers}", *extra]
    run(TrainRequest(RECIPE, RunOptions(out=out, sets=sets, dataset="fashion-mnist", teacher=str(teacher), epochs=2,
                                        batch_size=args.batch_size, max_train_samples=args.samples,
                                        max_eval_samples=32)))
    row = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    summary = json.loads((out / "summary.json").read_text())
    return {**row, "teacher_computed": (summary.get("teacher_outputs") or {}).get("computed")}


def run_plain(teacher_dir: Path, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """The hand-written loop; img/s and seconds per phase over the second of two epochs."""
    import timm
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from deitctl.config.loader import load_recipe
    from deitctl.data.samples import collate, with_transform
    from deitctl.data.splits import load_split, subset
    from deitctl.data.transforms import make_mixup, train_transform

    recipe = load_recipe(RECIPE, SETS)
    split = subset(load_split("fashion-mnist", "train"), args.samples, 0)
    loader = DataLoader(with_transform(split, train_transform(recipe), 3), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=args.workers, collate_fn=collate,
                        persistent_workers=args.workers > 0)
    student = timm.create_model("deit_tiny_distilled_patch16_224", num_classes=10, drop_path_rate=0.1)
    student.set_distilled_training(True)
    teacher = timm.create_model(f"local-dir:{teacher_dir}", pretrained=True).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.05)
    mixup = make_mixup(recipe, 10)
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
            with torch.no_grad():
                t_logits = teacher(x)
            t2 = time.perf_counter()
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


def runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="regnety_160", help="timm RegNetY (or any) architecture for the teacher")
    p.add_argument("--samples", type=int, default=192, help="images per epoch (two epochs per run)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ablation", action="store_true", help="also run deitctl with each lever switched")
    p.add_argument("--store", action="store_true", help="also time a later student that reads the teacher's "
                   "outputs a first run stored (the main job's soft student; FKD)")
    args = p.parse_args()
    from machine import header

    print(header())
    from deitctl.models.factory import build as create
    from deitctl.models.inspect import count_gmacs
    from deitctl.runtime.precision import native_bf16

    peak_dtype = torch.bfloat16 if native_bf16(torch.device("cpu")) else torch.float32  # emulated bf16: fp32 runs
    peak = matmul_peak(peak_dtype)
    student_gmacs = count_gmacs(create("deit_tiny_distilled_patch16_224", num_classes=10), 224, 3)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        teacher, teacher_gmacs = make_teacher(args.teacher, tmp / "teacher")
        base, ours, waits, phases = [], [], [], []
        ablation: dict[str, list[float]] = {name: [] for name in LEVERS} if args.ablation else {}
        if args.store:  # a first student computes and stores the outputs, untimed; each repeat then reads them
            os.environ["DEITCTL_CACHE"] = str(tmp / "cache")
            run_deitctl(teacher, args, tmp, STORE)
            ablation[READ] = []
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            rate, ph = run_plain(teacher, args)
            base.append(rate)
            phases.append(ph)
            row = run_deitctl(teacher, args, tmp)
            ours.append(row["img_per_s"])
            waits.append(row["data_wait_s"] / row["epoch_time_s"])
            for name, override in LEVERS.items() if args.ablation else ():
                ablation[name].append(run_deitctl(teacher, args, tmp, (override,))["img_per_s"])
            if args.store:
                row = run_deitctl(teacher, args, tmp, STORE)
                if row["teacher_computed"]:
                    raise SystemExit(f"the reading run computed {row['teacher_computed']} teacher outputs")
                ablation[READ].append(row["img_per_s"])
    flop_per_img = (6 * student_gmacs + 2 * teacher_gmacs) * 1e9
    b, o = statistics.median(base), statistics.median(ours)
    print(f"\nDeiT-Ti⚗ (224 px, {student_gmacs:.3f} GMACs) + {args.teacher} teacher ({teacher_gmacs:.2f} GMACs), hard "
          f"distillation, full DeiT augmentation, Fashion-MNIST, batch {args.batch_size}, {args.samples} images/epoch,"
          f" {args.workers} loader worker(s), {torch.get_num_threads()} threads, medians of {args.repeats} runs")
    print(f"{peak_dtype} matmul peak (measured): {peak / 1e9:.0f} GFLOP/s; {flop_per_img / 1e9:.2f} GFLOP per training image\n")
    print("| loop | img/s (median) | × plain | MFU | runs |\n|---|---:|---:|---:|---|")
    for name, values in (("plain eager fp32 PyTorch + timm", base), ("deitctl train (defaults)", ours),
                         *((f"deitctl, {k}", v) for k, v in ablation.items())):
        m = statistics.median(values)
        flop = 6 * student_gmacs * 1e9 if name == f"deitctl, {READ}" else flop_per_img  # it runs no teacher
        print(f"| {name} | {m:.1f} | {m / b:.2f} | {100 * m * flop / peak:.1f} % | {runs(values)} |")
    print(f"\nratio deitctl / plain: {o / b:.2f}×   MFU {100 * o * flop_per_img / peak:.1f} % "
          f"(plain {100 * b * flop_per_img / peak:.1f} %)   deitctl's step waited for data "
          f"{100 * statistics.median(waits):.1f} % of the epoch")
    print("\nplain loop, where the time goes (median seconds per epoch):")
    for key in phases[0]:
        print(f"  {key:18s} {statistics.median(ph[key] for ph in phases):7.2f}")


if __name__ == "__main__":
    main()
