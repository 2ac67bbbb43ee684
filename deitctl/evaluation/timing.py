"""Timing a forward pass and the memory it takes — the measurements behind ``deitctl bench``.

A few warm-up passes absorb one-time costs (autotuning, lazy init, compilation), then ``repeats``
timed runs, whose median we report so one hiccup does not move the number. Each timed run repeats
the forward until it lasts long enough for the clock to be meaningful.

Peak memory is measured in one more pass after the timed ones (on the CPU its sampling thread would
take cycles from the timed runs): on a GPU, ``torch.cuda.max_memory_allocated`` (weights +
activations); on the CPU, the increase of the resident set over the pass, sampled in a background
thread (the weights were already resident, so this is the activations and workspace).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError

if TYPE_CHECKING:
    import torch

WARMUP = 2
MIN_RUN_S = 0.1  # a timed run repeats the forward pass until it lasts at least this long


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
