"""``deitctl bench``: the paper's Table 10 columns measured on this machine.

Throughput is images per second of the eval-mode forward pass under ``inference_mode``, run exactly
as ``deitctl eval`` runs it (``speed.Predictor``: bf16/fp16 rows cast the model whole; ``--compile``
compiles it with frozen weights): a few warm-up passes (autotuning, lazy init, compilation), then
``repeats`` timed runs whose median we report, so one hiccup does not move the number. Each timed run
repeats the forward until it lasts long enough for the clock to be meaningful.

Peak memory, measured in one more forward pass after the timed ones (on the CPU its sampling thread
would take cycles from the timed runs): on a GPU, ``torch.cuda.max_memory_allocated`` (weights +
activations, what the allocator handed out); on the CPU, the increase of the resident set over the
pass, sampled in a background thread (the weights were already resident, so this is the activations
and workspace).
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from deitctl.errors import DeitctlError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.modelref import LoadedModel

T = TypeVar("T")
# table header → row key: short headers so the table fits an 80-column terminal
TABLE = {"batch": "batch_size", "precision": "precision", "img/s": "img_per_s", "ms/batch": "ms_per_batch",
         "peak MiB": "peak_mem_mb", "params (M)": "params_m", "GMACs": "gmacs", "size": "img_size"}
WARMUP = 2
MIN_RUN_S = 0.1  # a timed run repeats the forward pass until it lasts at least this long


def parse_list(text: str, kind: Callable[[str], T], option: str) -> list[T]:
    """``"1,32"`` → ``[1, 32]``; a clear usage error for empty or malformed items."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise UsageError(f"{option}: expected a comma-separated list like 1,32 (got '{text}')") from None
    if not values:
        raise UsageError(f"{option}: give at least one value")
    return values


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows under the short table headers (``--json`` keeps the full key names)."""
    return [{header: row[key] for header, key in TABLE.items()} for row in rows]


def load_for_bench(ref: str, img_size: int | None = None) -> LoadedModel:
    """A recipe's model (random weights: speed does not depend on them), or any model reference."""
    from deitctl.modelref import LoadedModel, load_model
    from deitctl.recipes import is_recipe

    if is_recipe(ref):
        from deitctl.models import create_model
        from deitctl.recipes import load_recipe

        recipe = load_recipe(ref)
        return LoadedModel(create_model(recipe, img_size=img_size), recipe.model, ref)
    return load_model(ref, img_size=img_size)


def counting_model(loaded: LoadedModel) -> nn.Module:
    """The model to count parameters and GMACs on: itself, or for an ONNX file the architecture it was
    exported from, rebuilt from its config on the meta device (shapes only)."""
    if loaded.runtime == "torch":
        return loaded.model
    import torch

    from deitctl.models import create_by_name

    with torch.device("meta"):
        return create_by_name(loaded.arch, **loaded.model_args)


def run_bench(
    ref: str,
    batch_sizes: list[int],
    precisions: list[str] | None = None,
    img_size: int | None = None,
    compile_model: bool = False,
    repeats: int = 5,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (precision, batch size): img/s, ms per batch and peak memory, plus params and GMACs.

    ``precisions`` default: fp32 and bf16 for a PyTorch model, fp32 for an ONNX file (its own precision).
    """
    import torch

    from deitctl.evaluate import autocast
    from deitctl.models import count_gmacs, count_params, input_size
    from deitctl.speed import Predictor

    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1 (got {repeats})")
    if any(b < 1 for b in batch_sizes):
        raise UsageError(f"--batch-sizes must be positive (got {', '.join(map(str, batch_sizes))})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for p in precisions or ():  # refuse fp16-on-CPU and typos before any slow work
        autocast(p, dev)
    loaded = load_for_bench(ref, img_size)
    default = ["fp32", "bf16"] if loaded.runtime == "torch" else ["fp32"]
    precisions = [loaded.check_runtime(p, compile_model) for p in precisions or default]
    if loaded.runtime != "torch":
        dev = torch.device("cpu")  # ONNX Runtime's CPU provider
    model, counted = loaded.model.eval().to(dev), counting_model(loaded)
    channels, height, width = input_size(counted)
    height, width = (img_size, img_size) if img_size else (height, width)
    common = {
        "model": ref,
        "params": count_params(counted),
        "params_m": round(count_params(counted) / 1e6, 2),
        "gmacs": round(count_gmacs(counted, height, channels), 4),
        "img_size": height,
        "device": _device_name(dev),
        "runtime": loaded.runtime,
        "compile": compile_model,
    }
    rows = []
    for precision in precisions:
        for batch in batch_sizes:  # a fresh copy per row: a compiled model is specialised to its batch size
            forward = Predictor(copy.deepcopy(model), precision, dev, compile_model)
            x = torch.randn(batch, channels, height, width, device=dev)
            seconds = time_forward(forward, x, contextlib.nullcontext, repeats, dev)
            with PeakMemory(dev) as peak, torch.inference_mode():  # its own pass: the sampler would slow the timing
                forward(x)
            rows.append({"batch_size": batch, "precision": precision, "img_per_s": round(batch / seconds, 2),
                         "ms_per_batch": round(seconds * 1e3, 3), "peak_mem_mb": round(peak.mib, 1), **common})
    return rows


def time_forward(
    forward: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    amp: Callable[[], contextlib.AbstractContextManager],
    repeats: int,
    device: torch.device,
) -> float:
    """Median seconds per forward pass over ``repeats`` timed runs, after ``WARMUP`` untimed ones (which
    absorb one-time costs: compilation, kernel autotuning, lazy initialisation)."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(iterations: int) -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode(), amp():
            for _ in range(iterations):
                forward(x)
        sync()
        return (time.perf_counter() - start) / iterations

    try:
        one = min(run(1) for _ in range(WARMUP))
    except Exception as e:  # compile and backend failures surface at the first call
        raise DeitctlError(f"the benchmark's first forward pass failed ({type(e).__name__}: {e}); "
                           "try without --compile or with another --precision") from None
    iterations = max(1, math.ceil(MIN_RUN_S / max(one, 1e-9)))
    return statistics.median([run(iterations) for _ in range(repeats)])


def _device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


class PeakMemory:
    """Peak memory (MiB) of the ``with`` block: the GPU allocator's peak, or the CPU resident-set increase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = 0.0
        self._sampler: _RssSampler | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._sampler = _RssSampler().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self._sampler is None:
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._sampler.__exit__(*exc)
            self.mib = self._sampler.increase / 2**20


class _RssSampler:
    """Polls the resident set size in a thread: the OS keeps no per-interval peak for us."""

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.baseline = self.peak = 0

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        import gc

        gc.collect()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)
