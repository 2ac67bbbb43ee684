"""Part (b) of the GPU check: training img/s of DeiT-Ti⚗/S⚗/B⚗ with the RegNetY-16GF teacher, deitctl against a
plain timm AMP loop, side by side in one process.

    python benchmarks/gpu_train_check.py --folder DATA --work WORK --out OUT [--budget-s 150]
    python benchmarks/gpu_train_check.py ... --students ti --teacher regnety_002 --img-size 64 --batch-size 2 \\
        --steps 1 --windows 1                                     # the CPU dry run's plumbing check

deitctl's side is its own training loop: the run is planned and set up exactly as `deitctl train RECIPE --dataset
DATA --teacher T` sets it up (``training.parts.setup``: accelerate, precision, fused attention, fused AdamW, the
frozen teacher in its own precision, compiled and warmed up), then each timed window is one
``training.loop.train_epoch`` — mixup, teacher, autocast, the paper's loss, backward, the non-finite check,
the optimizer step — of ``--steps`` steps. Only its loader is swapped for one batch kept on the GPU: a 16-core
machine decoding and augmenting 224 px images would otherwise time the data pipeline, not the GPU (part (c)
runs the real CLI, loader included). The teacher-output store is off: every window replays one batch, which a
store would answer from disk after the first, and a first run on new data computes every output anyway. The
student is not compiled (``compile_student=false``, what `auto` picks below 2,000 steps); ``--compile-student``
times it compiled, at a minute or more of compilation each.

The baseline is the loop a user writes with timm: the same timm models, timm's Mixup and soft-target loss,
torch's AdamW, bf16 autocast around teacher and student, hard distillation as the paper defines it.
Windows alternate between the two, so drifting clocks hit both alike; figures are medians. The teacher has
random weights (speed does not depend on them) and the folder's 10 classes.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STUDENTS = {  # key → (label, deitctl recipe, timm architecture)
    "ti": ("DeiT-Ti⚗", "deit-ti-distilled", "deit_tiny_distilled_patch16_224"),
    "s": ("DeiT-S⚗", "deit-s-distilled", "deit_small_distilled_patch16_224"),
    "b": ("DeiT-B⚗", "deit-b-distilled", "deit_base_distilled_patch16_224"),
}
CLASSES = 10  # gpu_parts.py folder's default; the teacher must predict as many classes as the data has


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(window: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """Seconds of one window, the GPU drained before and after; and its peak GPU memory in GiB (0 on a CPU)."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    window()
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0)


def gmacs_of(arch: str, img_size: int) -> float | None:
    """The student's multiply-accumulates per image, counted on the meta device (shapes only, no arithmetic)."""
    from deitctl.models.factory import build
    from deitctl.models.inspect import count_gmacs

    try:
        with torch.device("meta"):
            return count_gmacs(build(arch, img_size=img_size, num_classes=CLASSES), img_size, 3)
    except Exception:  # a count is a nicety; the throughput is the figure
        return None


def deitctl_side(recipe: str, args: argparse.Namespace, teacher: Path, run: Path) -> tuple[Callable[[], None], Any]:
    """deitctl's run, set up as `deitctl train` sets it up; returns one window (``--steps`` steps) and the parts."""
    from deitctl.config.recipe import Recipe
    from deitctl.training.loop import train_epoch
    from deitctl.training.parts import setup
    from deitctl.training.plan import RunOptions, plan_run

    sets = ["eval_every=0", "repeated_aug=0", "num_workers=0", f"compile_student={str(args.compile_student).lower()}",
            f"img_size={args.img_size}"]
    if "teacher_store" in Recipe.model_fields:  # every window replays one batch: a store would serve the teacher's
        sets.append("teacher_store=false")  # outputs from the second window on, and time a loop without it
    plan = plan_run(recipe, RunOptions(out=run, sets=sets, dataset=str(args.folder), teacher=str(teacher),
                                       epochs=args.windows + 2, batch_size=args.batch_size))
    try:
        parts = setup(plan)
    finally:
        plan.release()  # the run directory's lock: nothing else will write there
    device = parts.accel.device
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, CLASSES, (args.batch_size,), device=device)
    parts.train_loader = [(x, y)] * args.steps  # the swapped loader: one batch, already on the GPU
    parts.steps_per_epoch = args.steps

    def window() -> None:
        parts.state.step_in_epoch = 0  # what the loop does between epochs
        train_epoch(parts, 0, lambda *_: None, None)

    return window, parts


def plain_side(arch: str, args: argparse.Namespace, teacher: Path, device: torch.device) -> Callable[[], None]:
    """The hand-written timm AMP loop's window: ``--steps`` steps on one batch kept on the device."""
    import timm
    import torch.nn.functional as F
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    student = timm.create_model(arch, num_classes=CLASSES, drop_path_rate=0.1, img_size=args.img_size).to(device)
    student.set_distilled_training(True)
    student.train()
    frozen = timm.create_model(f"local-dir:{teacher}", pretrained=True).to(device).eval()
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-4 * args.batch_size / 512, weight_decay=0.05)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=CLASSES)
    soft_ce = SoftTargetCrossEntropy()
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, CLASSES, (args.batch_size,), device=device)

    def window() -> None:
        for _ in range(args.steps):
            images, targets = mixup(x, y)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                with torch.no_grad():
                    hard = frozen(images).argmax(-1)
                cls, dist = student(images)
                loss = 0.5 * soft_ce(cls, targets) + 0.5 * F.cross_entropy(dist, hard)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss.item()  # the user's loop logs its loss; the sync is in theirs too

    return window


def measure_student(key: str, args: argparse.Namespace, teacher: Path, teacher_gmacs: float) -> dict[str, Any]:
    """Both loops for one student, windows interleaved after one untimed warm-up window each."""
    label, recipe, arch = STUDENTS[key]
    start = time.perf_counter()
    ours, parts = deitctl_side(recipe, args, teacher, args.work / f"run-{key}")
    device = parts.accel.device
    setup_s = time.perf_counter() - start
    plain = plain_side(arch, args, teacher, device)
    images = args.batch_size * args.steps
    rates: dict[str, list[float]] = {"deitctl": [], "plain": []}
    peaks: dict[str, float] = {"deitctl": 0.0, "plain": 0.0}
    for i in range(args.windows + 1):
        for name, window in (("deitctl", ours), ("plain", plain)):
            seconds, peak = timed(window, device)
            peaks[name] = max(peaks[name], peak)
            if i:  # the first window of each warms up (cuDNN's algorithm search, the allocator)
                rates[name].append(images / seconds)
        print(f"{label} window {i}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in rates.items() if v), flush=True)
    student_gmacs = gmacs_of(arch, args.img_size)
    flop = (6 * student_gmacs + 2 * teacher_gmacs) * 1e9 if student_gmacs else None
    med = {name: statistics.median(v) for name, v in rates.items()}
    return {"label": label, "recipe": recipe, "arch": arch, "img_per_s": rates, "median": med,
            "ratio": med["deitctl"] / med["plain"], "student_gmacs": student_gmacs,
            "tflops": {k: v * flop / 1e12 for k, v in med.items()} if flop else None, "peak_gib": peaks,
            "setup_s": round(setup_s, 1), "wall_s": round(time.perf_counter() - start, 1),
            "deitctl_levers": {"precision": parts.precision, "teacher_precision": parts.teacher.precision,
                               "teacher_compiled": parts.teacher.compiled, "student_compiled": parts.compile_student,
                               "attention": parts.attention, "fused_optimizer": parts.recipe.fused_optimizer}}


def render(doc: dict[str, Any]) -> str:
    """The side-by-side table: medians, their ratio, model TFLOP/s, peak memory and every window."""
    lines = [f"batch {doc['batch_size']}, {doc['img_size']} px, {doc['steps']} steps per window, medians of "
             f"{doc['windows']} windows; teacher {doc['teacher']} ({doc['teacher_gmacs']:.1f} GMACs, random weights)", "",
             "| student | deitctl img/s | plain timm AMP img/s | deitctl / plain | model TFLOP/s (deitctl / plain) | "
             "peak GiB in its windows, both loops' weights resident (deitctl / plain) | deitctl's levers | windows (deitctl; plain) |",
             "|---|---:|---:|---:|---|---|---|---|"]
    for s in doc["students"].values():
        m, t, p, lv = s["median"], s["tflops"], s["peak_gib"], s["deitctl_levers"]
        levers = (f"{lv['precision']}, teacher {lv['teacher_precision']}{' compiled' if lv['teacher_compiled'] else ''}"
                  f", student {'compiled' if lv['student_compiled'] else 'eager'}, {lv['attention']} attention")
        runs = "; ".join(", ".join(f"{v:.0f}" for v in s["img_per_s"][k]) for k in ("deitctl", "plain"))
        tflops = "—" if t is None else f"{t['deitctl']:.1f} / {t['plain']:.1f}"
        lines.append(f"| {s['label']} | {m['deitctl']:.0f} | {m['plain']:.0f} | {s['ratio']:.2f}× | {tflops} | "
                     f"{p['deitctl']:.1f} / {p['plain']:.1f} | {levers} | {runs} |")
    lines += [f"| {label} | skipped: {why} | | | | | | |" for label, why in doc.get("skipped", {}).items()]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, required=True, help="an image folder with 10 classes (gpu_parts.py folder)")
    p.add_argument("--work", type=Path, required=True, help="scratch: the teacher and the run directories")
    p.add_argument("--out", type=Path, required=True, help="folder for train.json")
    p.add_argument("--students", type=lambda s: s.split(","), default=list(STUDENTS))
    p.add_argument("--teacher", default="regnety_160", help="timm architecture of the teacher (RegNetY-16GF)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows per loop (after one warm-up window)")
    p.add_argument("--compile-student", action="store_true", help="deitctl's student compiled (a minute or more each)")
    p.add_argument("--budget-s", type=float, default=150.0, help="start no student that would likely end after this")
    args = p.parse_args()
    from bench_train import make_teacher
    from machine import header

    print(header(), flush=True)
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    teacher, teacher_gmacs = make_teacher(args.teacher, args.work / "teacher")
    doc: dict[str, Any] = {"header": header(), "teacher": args.teacher, "teacher_gmacs": teacher_gmacs,
                           "batch_size": args.batch_size, "img_size": args.img_size, "steps": args.steps,
                           "windows": args.windows, "students": {}, "skipped": {}}
    last = 0.0
    for key in args.students:
        left = args.budget_s - (time.perf_counter() - started)
        if left < 1.5 * last:  # the next student is larger than the last one: it would likely be cut off
            doc["skipped"][STUDENTS[key][0]] = f"budget: {left:.0f} s left, the last student took {last:.0f} s"
        else:
            result = measure_student(key, args, teacher, teacher_gmacs)
            doc["students"][key] = result
            last = result["wall_s"]
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        from gpu_parts import write_json

        write_json(args.out / "train.json", doc)  # after every student: a timeout keeps what was measured
    print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
