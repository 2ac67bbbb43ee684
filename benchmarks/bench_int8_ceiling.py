"""How far int8 can take DeiT-Ti inference on this CPU: the matrix products' int8/fp32 speed ratio, measured on
DeiT-Ti's own shapes, and the share of an eager fp32 forward those products take — the ceiling Amdahl's law gives.

Without VNNI (the AVX2 class) an int8 multiply-add goes through VPMADDUBSW + VPMADDWD; with it, one VPDPBUSD. The
kernels timed are the ones deitctl's int8 paths use — torchao's static int8 Linear compiled by inductor into oneDNN
(``--precision int8``) and ONNX Runtime's ``MatMulInteger`` (u8 activations × s8 weights, ``export --quantize
int8``) — against torch's fp32 Linear. The share comes from
torch.profiler over the timm forward (batch 32, 224 px): the Linear layers and the attention kernel.

    PYTHONPATH=benchmarks:. .venv/bin/python benchmarks/bench_int8_ceiling.py [--repeats 7] [--batch 32]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

# DeiT-Ti's matrix products per block at 224 px: (in, out) of qkv, proj, fc1, fc2 over batch × 197 tokens
SHAPES = {"qkv": (192, 576), "proj": (192, 192), "fc1": (192, 768), "fc2": (768, 192)}
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul",
              "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention")


def ort_session(k: int, n: int, threads: int):
    """A one-node ONNX Runtime graph: u8 activations (m × k) times s8 weights (k × n) → int32."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).integers(-64, 64, (k, n), dtype=np.int8), "w")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, ["m", k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", n])], [weight])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def int8_linears(m: int) -> list:
    """deitctl's int8 path on each shape: an nn.Linear quantized by ``runtime.quantize`` (static, per-channel
    weights), compiled frozen as ``runtime.predictor`` does — activations quantized and dequantized in the kernel."""
    import torch

    from deitctl.runtime.compile import compile_in_place, first_call
    from deitctl.runtime.quantize import quantize_int8

    calls = []
    for k, n in SHAPES.values():
        x = torch.randn(m, k)
        model = quantize_int8(torch.nn.Linear(k, n).eval(), x, [x])
        compile_in_place(model)
        with torch.inference_mode():
            first_call(model, lambda mod=model, x=x: mod(x), "int8 linear", frozen=True, cpp_wrapper=True)
        calls.append((model, x))
    return calls


def gemm_rates(m: int, repeats: int, threads: int) -> dict[str, float]:
    """GOP/s (a multiply-add counts 2) over DeiT-Ti's four product shapes, the kernels taking turns."""
    import numpy as np
    import torch

    from deitctl.evaluation.timing import time_forward

    ops = sum(2 * m * k * n for k, n in SHAPES.values())
    rng = np.random.default_rng(1)
    linears = [(torch.nn.Linear(k, n).eval(), torch.randn(m, k)) for k, n in SHAPES.values()]
    int8 = int8_linears(m)
    ort = [(ort_session(k, n, threads), rng.integers(0, 256, (m, k), dtype=np.uint8)) for k, n in SHAPES.values()]
    kernels = {
        "torch fp32 nn.Linear (eager)": lambda: [mod(x) for mod, x in linears],
        "deitctl int8 nn.Linear (torchao X86 static, compiled frozen)": lambda: [mod(x) for mod, x in int8],
        "ONNX Runtime MatMulInteger u8×s8 (export --quantize int8)": lambda: [sess.run(None, {"x": x})
                                                                           for sess, x in ort],
    }
    times: dict[str, list[float]] = {name: [] for name in kernels}
    cpu = torch.device("cpu")
    for _ in range(repeats):  # interleaved; each time is deitctl bench's (warm-up, then the median of 3 runs)
        for name, fn in kernels.items():
            times[name].append(time_forward(lambda _, fn=fn: fn(), torch.empty(0), contextlib.nullcontext, 3, cpu))
    return {name: ops / statistics.median(t) / 1e9 for name, t in times.items()}


def matmul_share(batch: int, repeats: int) -> float:
    """The share of an eager fp32 timm DeiT-Ti forward spent in its matrix products (self CPU time)."""
    import timm
    import torch
    from torch.profiler import ProfilerActivity, profile

    model = timm.create_model("deit_tiny_patch16_224").eval()
    x = torch.randn(batch, 3, 224, 224)
    shares = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            shares.append(sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total)
    return statistics.median(shares)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()

    import torch
    from machine import header

    rates = gemm_rates(args.batch * 197, args.repeats, torch.get_num_threads())
    share = matmul_share(args.batch, args.repeats)
    print(header())
    print(f"\nDeiT-Ti's Linear shapes at batch {args.batch} ({args.batch * 197} tokens), medians of {args.repeats}:\n")
    fp32 = rates["torch fp32 nn.Linear (eager)"]
    print("| kernel | GOP/s | vs fp32 |\n|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {rate / fp32:.2f}× |")
    ratio = max(rates.values()) / fp32
    unchanged, free = 1 / ((1 - share) + share / ratio), ratio / share
    print(f"\nmatrix products' share of an eager fp32 timm forward (self CPU time): {100 * share:.1f} %")
    print(f"best int8 / fp32 product speed: {ratio:.2f}×  →  whole forward with every product in int8: "
          f"{unchanged:.2f}× with the rest as fast as now, {free:.2f}× even if the rest cost nothing")
    print(f"2.5× needs int8 products {2.5 * share:.2f}× faster than fp32 even if the rest cost nothing")

if __name__ == "__main__":
    main()
