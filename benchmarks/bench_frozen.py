"""Frozen models (a teacher, an evaluated model): eager against compiled, fp32 against bf16, side by side.

The measurements behind the ``compile`` rules of ``deitctl.runtime.rules``: whether compiling a model that
will not train again (inductor, weights frozen in) beats running it eagerly, per number format, on this
machine. Each model is run exactly as deitctl runs it — a teacher through ``training.teacher.Teacher``
(weights cast whole, channels-last, ``inference_mode``), an evaluated model through
``runtime.predictor.Predictor`` — with random weights (speed does not depend on them):

  main-job teacher   resnet10t at quarter width, 1 channel, 28 px, batch 64, one thread (as main.sh runs it)
  convnet teacher    regnety_016 (RegNetY-1.6GF, the paper's teacher family), 224 px, batch 16
  DeiT-Ti eval       deit_tiny_patch16_224, 224 px, batch 32 (``deitctl eval`` / ``bench``)

Eight compiled models live in one process (dynamo keeps at most 8), so the compiler is not reset between them.
The teachers are also timed in fp32 with the contiguous (NCHW) layout instead of deitctl's channels-last.
Variants take turns ``--repeats`` times (drifting load hits them alike); each figure is the median.

    .venv/bin/python benchmarks/bench_frozen.py --repeats 5        # ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch


def teacher_variants(arch: str, kwargs: dict, chans: int, size: int, batch: int) -> tuple[dict, torch.Tensor]:
    import timm

    from deitctl.runtime.compile import first_call
    from deitctl.training.teacher import Teacher

    torch.manual_seed(0)
    base = timm.create_model(arch, num_classes=10, in_chans=chans, **kwargs).eval()
    x = torch.randn(batch, chans, size, size)
    stats = [0.5] * chans, [0.25] * chans  # the same normalisation for student and teacher: no re-normalising
    out: dict[str, Callable] = {}
    for precision, layout in (("fp32", "channels-last"), ("bf16", "channels-last"), ("fp32", "NCHW")):
        for compiled in (False, True):
            t = Teacher(copy.deepcopy(base), *stats, *stats)
            if layout == "NCHW":  # deitctl's teacher is always channels-last: this times the other layout
                t.memory_format = torch.contiguous_format
            t.prepare(torch.device("cpu"), precision, compiled)
            if compiled:
                first_call(t.model, lambda t=t: t(x), "teacher", frozen=True)
            name = f"{precision} {'compiled' if compiled else 'eager'}"
            out[name if layout == "channels-last" else f"{name}, NCHW"] = t
    return out, x


def eval_variants(batch: int) -> tuple[dict, torch.Tensor]:
    import timm

    from deitctl.runtime.compile import compile_in_place
    from deitctl.runtime.predictor import Predictor

    torch.manual_seed(0)
    base = timm.create_model("deit_tiny_patch16_224").eval()
    x = torch.randn(batch, 3, 224, 224)
    out: dict[str, Callable] = {}
    for precision in ("fp32", "bf16"):
        for compiled in (False, True):
            # Predictor(compile_model=True) would reset the compiler, dropping the other compiled variant
            p = Predictor(copy.deepcopy(base), precision, torch.device("cpu"))
            if compiled:
                compile_in_place(p.heads)
                p.compiled = True
            with torch.inference_mode():
                p(x)  # the first call compiles
            out[f"{precision} {'compiled' if compiled else 'eager'}"] = p
    return out, x


def measure(variants: dict, x: torch.Tensor, repeats: int, threads: int) -> dict[str, list[float]]:
    import contextlib

    from deitctl.evaluation.timing import time_forward

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(repeats):
            for name, forward in variants.items():
                rates[name].append(x.shape[0] / time_forward(forward, x, contextlib.nullcontext, 3, x.device))
    finally:
        torch.set_num_threads(saved)
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", choices=("main-teacher", "regnety", "deit"), help="one table only")
    args = p.parse_args()
    from machine import header, ratio_table, runs_line

    print(header())
    threads = torch.get_num_threads()
    cases = {
        "main-teacher": ("main-job teacher resnet10t/4, 28 px, batch 64, 1 thread", 1,
                         lambda: teacher_variants("resnet10t", {"channels": [32, 64, 128, 256]}, 1, 28, 64)),
        "regnety": (f"RegNetY-1.6GF teacher, 224 px, batch 16, {threads} threads", threads,
                    lambda: teacher_variants("regnety_016", {}, 3, 224, 16)),
        "deit": (f"DeiT-Ti eval (Predictor), 224 px, batch 32, {threads} threads", threads, lambda: eval_variants(32)),
    }
    for key, (title, n, build) in cases.items():
        if args.only and key != args.only:
            continue
        variants, x = build()
        rates = measure(variants, x, args.repeats, n)
        print()
        print(ratio_table(title, "img/s", rates))
        print(runs_line(rates))
        del variants


if __name__ == "__main__":
    main()
