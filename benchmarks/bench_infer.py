"""Inference: `deitctl eval`/`bench` and the ONNX exports against eager fp32 timm, side by side; and top-1.

Speed: DeiT-Ti (deit_tiny_patch16_224, random weights: speed does not depend on them) at 224 px, batch 32.
Every variant is timed by the same code (deitctl.app.bench.time_forward: warm-up, then the median of timed
runs), and the variants take turns, --repeats times, so drifting machine load hits them alike:

  eager fp32 timm           the baseline: timm.create_model(...).eval() under inference_mode
  bf16 autocast             the usual mixed-precision way, for reference
  deitctl eval (default)    --precision auto: the model cast to bf16 where the hardware has it
  deitctl eval --compile    the same, compiled by inductor with the weights frozen in
  deitctl eval --precision int8   static int8 (torchao's X86 quantizer, VNNI), compiled; other ops fp32
  ONNX Runtime fp32         deitctl export --format onnx (portable opset 18)
  ONNX Runtime int8         deitctl export --format onnx --quantize int8

With --candidates, also the levers evaluated and not kept (docs/performance.md):
  bf16 compiled max-autotune   inductor's autotuned CPP GEMM templates, weights frozen in
  torch dynamic int8           torch.ao.quantization.quantize_dynamic of every nn.Linear (fbgemm, VNNI)
  static int8, other ops bf16  deitctl's int8 with bf16 autocast around what stays unquantized

Accuracy: `deitctl eval` of a trained model (default: the main job's distilled Fashion-MNIST student) on
the whole test split, for each variant, with the change in top-1 against fp32.

    python benchmarks/bench_infer.py                 # ~5 min on 2 cores, after `bash scripts/main.sh`
    python benchmarks/bench_infer.py --repeats 7 --model runs/main/fashion-deit-ti-distilled

Prints medians and ratios against the baseline; never run as a test (machines are noisy).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
from pathlib import Path

import torch


def candidate_variants(model: torch.nn.Module, example: torch.Tensor) -> dict:
    """Levers measured and not kept: inductor max-autotune (bf16, frozen), torch's dynamic int8, static int8
    with the unquantized ops under bf16 autocast."""
    from torch._inductor import config

    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    tuned = torch.compile(bf16, mode="max-autotune")
    with torch.inference_mode(), config.patch(freezing=True):
        tuned(example.to(torch.bfloat16))  # compile and autotune now, not inside the timing
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    from deitctl.runtime.quantize import quantize_int8

    static = torch.compile(quantize_int8(copy.deepcopy(model), example, [example]))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    with torch.inference_mode(), config.patch(freezing=True, cpp_wrapper=True), autocast():
        static(example)
    none = contextlib.nullcontext
    return {"bf16 compiled max-autotune (not kept)": (lambda x: tuned(x.to(torch.bfloat16)), none),
            "torch dynamic int8 (not kept)": (int8, none),
            "static int8, other ops bf16 autocast (not kept)": (static, autocast)}


def speed_variants(tmp: Path, precision: str, candidate_example: torch.Tensor | None = None) -> dict:
    """name → (forward callable, autocast context factory), all on the same DeiT-Ti weights."""
    import timm

    from deitctl.app.export import ExportRequest
    from deitctl.app.export import run as export_model
    from deitctl.models.refs import load_model
    from deitctl.models.store import save_model_dir
    from deitctl.runtime.predictor import Predictor

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224").eval()
    save_model_dir(model, tmp / "deit-ti")
    for name, quantize in (("onnx-fp32", None), ("onnx-int8", "int8")):
        export_model(ExportRequest(str(tmp / "deit-ti"), "onnx", tmp / name, quantize=quantize))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    none = contextlib.nullcontext
    variants = {
        "eager fp32 timm (baseline)": (model, none),
        "bf16 autocast (reference)": (model, autocast),
        f"deitctl eval (default: {precision})": (Predictor(copy.deepcopy(model), precision, cpu), none),
        f"deitctl eval --compile ({precision})": (Predictor(copy.deepcopy(model), precision, cpu, True), none),
        "deitctl eval --precision int8": (Predictor(copy.deepcopy(model), "int8", cpu), none),
        "ONNX Runtime fp32 (export)": (load_model(str(tmp / "onnx-fp32")).model, none),
        "ONNX Runtime int8 (export --quantize int8)": (load_model(str(tmp / "onnx-int8")).model, none),
    }
    if candidate_example is None:
        return variants
    return {**variants, **candidate_variants(model, candidate_example)}


def measure_speed(args: argparse.Namespace, tmp: Path, precision: str) -> None:
    from deitctl.evaluation.timing import time_forward

    x = torch.randn(args.batch_size, 3, 224, 224)
    variants = speed_variants(tmp, precision, x if args.candidates else None)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (forward, amp) in variants.items():
            rates[name].append(args.batch_size / time_forward(forward, x, amp, 3, torch.device("cpu")))
    base = statistics.median(rates["eager fp32 timm (baseline)"])
    print(f"\nDeiT-Ti 224 px, batch {args.batch_size}, {torch.get_num_threads()} threads, CPU; "
          f"medians of {args.repeats} interleaved runs (each the median of 3 timed passes)\n")
    print("| variant | img/s | × eager fp32 | runs |\n|---|---:|---:|---|")
    for name, values in rates.items():
        m = statistics.median(values)
        print(f"| {name} | {m:.1f} | {m / base:.2f} | {', '.join(f'{v:.1f}' for v in values)} |")


def measure_accuracy(args: argparse.Namespace, tmp: Path, precision: str) -> None:
    from deitctl.app.eval import EvalRequest
    from deitctl.app.eval import run as run_eval
    from deitctl.app.export import ExportRequest
    from deitctl.app.export import run as export_model

    if not Path(args.model, "model.safetensors").is_file():
        print(f"\n(no trained model at {args.model}: run `bash scripts/main.sh` for the accuracy table)")
        return
    for name, quantize in (("fm-onnx-fp32", None), ("fm-onnx-int8", "int8")):
        export_model(ExportRequest(args.model, "onnx", tmp / name, quantize=quantize))
    runs = {
        "fp32 (PyTorch)": (args.model, "fp32", False),
        f"default ({precision})": (args.model, "auto", False),
        f"--compile ({precision})": (args.model, "auto", True),
        "--precision int8 (calibrated on 256 training images)": (args.model, "int8", False),
        "ONNX Runtime fp32": (str(tmp / "fm-onnx-fp32"), "auto", False),
        "ONNX Runtime int8": (str(tmp / "fm-onnx-int8"), "auto", False),
    }
    results = {name: run_eval(EvalRequest(ref, dataset=args.dataset, precision=p, compile_model=c, num_workers=1))
               for name, (ref, p, c) in runs.items()}
    ref = results["fp32 (PyTorch)"]["top1"]
    print(f"\n`deitctl eval {args.model}` on {args.dataset} ({results['fp32 (PyTorch)']['num_samples']} images)\n")
    print("| variant | top-1 | Δ top-1 vs fp32 | class head | dist. head | loss |\n|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        heads = " | ".join(f"{r[k]:.2f}" if k in r else "—" for k in ("top1_cls", "top1_dist"))
        print(f"| {name} | {r['top1']:.2f} | {r['top1'] - ref:+.2f} | {heads} | {r['loss']:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model", default="runs/main/fashion-deit-ti-distilled", help="trained model for the top-1 table")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--candidates", action="store_true", help="also time the levers evaluated and not kept")
    args = p.parse_args()
    from machine import header

    print(header())
    from deitctl.runtime.precision import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp_name:
        measure_speed(args, Path(tmp_name), precision)
        measure_accuracy(args, Path(tmp_name), precision)


if __name__ == "__main__":
    main()
