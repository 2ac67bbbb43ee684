"""``deitctl bench``: the paper's Table 10 columns measured on this machine.

Throughput is images per second of the eval-mode forward pass under ``inference_mode``, run exactly
as ``deitctl eval`` runs it (``runtime.predictor.Predictor``: bf16/fp16 rows cast the model whole;
``--compile`` compiles it with frozen weights; int8 quantizes and compiles it, calibrated on the random
inputs — a speed figure, not an accuracy one), timed by ``deitctl.evaluation.timing``.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.models.types import LoadedModel


@dataclass
class BenchRequest:
    model: str  # a model reference, recipe name or timm name
    batch_sizes: list[int]
    precisions: list[str] | None = None  # default: ``default_precisions`` (an ONNX file: fp32, its own precision)
    img_size: int | None = None
    compile_model: bool = False
    repeats: int = 5
    device: str | None = None


def load_for_bench(ref: str, img_size: int | None = None) -> LoadedModel:
    """A recipe's model (random weights: speed does not depend on them), or any model reference."""
    from deitctl.config.loader import is_recipe, load_recipe
    from deitctl.models.factory import create_model
    from deitctl.models.refs import load_model
    from deitctl.models.types import LoadedModel

    if is_recipe(ref):
        recipe = load_recipe(ref)
        return LoadedModel(create_model(recipe, img_size=img_size), recipe.model, ref)
    return load_model(ref, img_size=img_size)


def counting_model(loaded: LoadedModel) -> nn.Module:
    """The model to count parameters and GMACs on: itself, or for an ONNX file the architecture it was
    exported from, rebuilt from its config on the meta device (shapes only)."""
    if loaded.runtime == "torch":
        return loaded.model
    import torch

    from deitctl.models.factory import build

    with torch.device("meta"):
        return build(loaded.arch, **loaded.model_args)


def run(req: BenchRequest) -> list[dict[str, Any]]:
    """One row per (precision, batch size): img/s, ms per batch and peak memory, plus params and GMACs."""
    from deitctl.models.refs import preflight

    preflight(req.model)  # offline and not cached: say so now, not after torch and timm have loaded
    import torch

    from deitctl.evaluation.timing import PeakMemory, time_forward
    from deitctl.models.inspect import count_gmacs, count_params, input_size
    from deitctl.runtime.precision import autocast
    from deitctl.runtime.predictor import Predictor
    from deitctl.runtime.quantize import require_torchao

    if req.repeats < 1:
        raise UsageError(f"--repeats must be at least 1 (got {req.repeats})")
    if any(b < 1 for b in req.batch_sizes):
        raise UsageError(f"--batch-sizes must be positive (got {', '.join(map(str, req.batch_sizes))})")
    dev = torch.device(req.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for p in req.precisions or ():  # refuse fp16-on-CPU, int8 without torchao and typos before any slow work
        autocast(p, dev)
        if p == "int8":
            require_torchao()
    loaded = load_for_bench(req.model, req.img_size)
    default = default_precisions(dev) if loaded.runtime == "torch" else ["fp32"]
    precisions = [loaded.check_runtime(p, req.compile_model) for p in req.precisions or default]
    if loaded.runtime != "torch":
        dev = torch.device("cpu")  # ONNX Runtime's CPU provider
    model, counted = loaded.model.eval().to(dev), counting_model(loaded)
    channels, height, _ = input_size(counted)
    height = req.img_size or height
    common = {
        "model": req.model,
        "params": count_params(counted),
        "params_m": round(count_params(counted) / 1e6, 2),
        "gmacs": round(count_gmacs(counted, height, channels), 4),
        "img_size": height,
        "device": _device_name(dev),
        "runtime": loaded.runtime,
        "compile": req.compile_model,
    }
    rows = []
    for precision in precisions:
        for batch in req.batch_sizes:  # a fresh copy per row: a compiled model is specialised to its batch size
            forward = Predictor(copy.deepcopy(model), precision, dev, req.compile_model)
            x = torch.randn(batch, channels, height, height, device=dev)
            seconds = time_forward(forward, x, contextlib.nullcontext, req.repeats, dev)
            with PeakMemory(dev) as peak, torch.inference_mode():  # its own pass: the sampler would slow the timing
                forward(x)
            rows.append({"batch_size": batch, "precision": precision, "img_per_s": round(batch / seconds, 2),
                         "ms_per_batch": round(seconds * 1e3, 3), "peak_mem_mb": round(peak.mib, 1), **common,
                         "compile": forward.compiled})  # int8 always compiles
    return rows


def default_precisions(device: torch.device) -> list[str]:
    """fp32, and bf16 only where the hardware computes it: on a CPU that emulates bf16 (AVX2, plain AVX-512)
    a bf16 row is ~80× slower than fp32, a figure nobody would deploy — timed only when asked for."""
    from deitctl.core.console import log
    from deitctl.runtime.precision import native_bf16

    if native_bf16(device):
        return ["fp32", "bf16"]
    if device.type == "cpu":
        from deitctl.runtime.hardware import cpu

        log(f"bf16 is emulated on this CPU (class {cpu().kind}): timing fp32 only; --precision fp32,bf16 times both")
    return ["fp32"]


def _device_name(device: torch.device) -> str:
    import torch

    from deitctl.runtime.hardware import cpu

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {cpu().kind} ({torch.get_num_threads()} threads)"  # the class the speed rules key on
