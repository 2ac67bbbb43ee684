"""torch.compile (inductor) for models that train and for models that never train again.

The frozen teacher and inference models are compiled with their weights folded in ("freezing");
the student's training step is compiled only when the run is long enough to pay the compilation back.
A failed compilation costs a note and the eager speed, never the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deitctl.core.console import log

if TYPE_CHECKING:
    from torch import nn

COMPILE_STUDENT_MIN_STEPS = 2000  # measured break-even: ~500 steps of DeiT-Ti at 224 px, ~2,200 at 28 px


def resolve_compile_student(setting: bool | str, total_steps: int) -> bool:
    """``auto`` → compile when the whole run (not what is left of it: a resumed run decides alike) is long
    enough to pay back the one-time compilation."""
    if setting == "auto":
        return total_steps >= COMPILE_STUDENT_MIN_STEPS
    return bool(setting)


def fresh_compiler() -> None:
    """Start a run with an empty compiler cache. dynamo keeps at most 8 compiled versions per code object
    and every ``nn.Module.compile``d module shares one (``Module._call_impl``): the 9th module compiled in
    a process (a benchmark's runs, a notebook's) would silently run eagerly."""
    import torch

    torch.compiler.reset()


def compile_in_place(model: nn.Module) -> None:
    """``nn.Module.compile``: the module keeps its type, parameters and state-dict keys (checkpoints,
    ``accelerate.unwrap_model`` and DDP see the same model); only its ``__call__`` is compiled, at its
    first call (see :func:`first_call`)."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPUs
    model.compile()


def uncompile(model: nn.Module) -> None:
    """Undo :func:`compile_in_place` (torch keeps the compiled call in this attribute)."""
    model._compiled_call_impl = None


@contextlib.contextmanager
def eager(model: nn.Module):
    """Run a compiled module eagerly for a while (evaluation between epochs of a compiled training step
    would otherwise compile a second graph for eval mode, and a third for the last, smaller batch)."""
    saved = getattr(model, "_compiled_call_impl", None)
    model._compiled_call_impl = None
    try:
        yield
    finally:
        model._compiled_call_impl = saved


def first_call(model: nn.Module, call: Callable[[], Any], what: str, frozen: bool = False,
               cpp_wrapper: bool = False) -> bool:
    """Run the first, compiling call now (not inside the first timed step); fall back to eager on failure.

    ``frozen``: a model that never trains again (teacher, inference) is compiled with its weights folded
    in as constants ("freezing"), so inductor fuses conv+BN+activation and pre-packs weights for oneDNN
    (the RegNetY-16GF teacher ran 1.5× faster). The switch must be on while the call traces: passed as
    ``torch.compile(options=...)`` it never took effect (torch 2.15), and left on globally it would
    reach every other compilation of the process. ``cpp_wrapper``: the graph's calls from C++, not Python
    (the int8 model's many small quantize/dequantize kernels: 1.04× for DeiT-Ti).

    torch.compile needs a C++ compiler on a CPU and cannot trace every model; a run should not die
    for a speed-up, so a failure costs a note and the eager speed. Returns True when compiled.
    """
    from torch._inductor import config

    try:
        with config.patch(freezing=frozen, cpp_wrapper=cpp_wrapper):
            call()
        return True
    except Exception as e:  # inductor raises many kinds (missing compiler, unsupported op, ...)
        uncompile(model)
        reason = " ".join(str(e).split())[:160]
        log(f"[yellow]note:[/] torch.compile failed for the {what} ({type(e).__name__}: {reason}); it runs "
            "eagerly (slower). Turn compilation off with --no-compile to skip the attempt")
        return False
