"""int8 inference on x86 CPUs: static post-training quantization, calibrated on real images.

The VNNI int8 path that made DeiT-Ti 2.5–2.7× faster than eager fp32 on an AVX512-BF16 EPYC without AMX, where
bf16 reached 1.9× and ONNX Runtime's dynamic int8 2.4× (``docs/performance.md``). The model is exported
(``torch.export``), every linear/conv gets observers from torchao's X86 inductor quantizer, a few batches
calibrate the activation ranges, and the converted graph is compiled by inductor with frozen weights, which
fuses quantize → int8 matmul → dequantize into oneDNN kernels. Uncompiled, the converted graph is a reference
(fp32 arithmetic with rounding steps), slower than fp32: int8 therefore always compiles.

Static scales come from the calibration batches, so ``deitctl eval`` calibrates on training images, never on
the images it scores.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

INSTALL_HINT = "pip install 'deitctl[int8]' (torchao)"


def require_torchao() -> None:
    """Refuse int8 without torchao, before any slow work (off the CPU it is ``precision.autocast`` that refuses)."""
    _quantizer()


def quantize_int8(module: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """``module`` with int8 weights and activations (per-channel weights, per-tensor activations), for inputs
    shaped like ``example``: calibrated on each batch of ``calibration`` (same shape), not yet compiled."""
    import torch

    prepare_pt2e, convert_pt2e, quantizer = _quantizer()
    with torch.inference_mode(False), torch.no_grad():  # export traces autograd-free, outside inference mode
        graph = torch.export.export(module, (example.clone(),), strict=False).module()
        prepared = prepare_pt2e(graph, quantizer)
        for batch in calibration:
            prepared(batch.clone())
        return convert_pt2e(prepared)


def _quantizer() -> tuple:
    """torchao's prepare and convert functions and an X86 quantizer set to its default int8 config."""
    with _quiet_import():
        try:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer,
                get_default_x86_inductor_quantization_config,
            )
        except ImportError as e:
            raise UsageError(f"precision int8 needs torchao, which is not installed ({e}); {INSTALL_HINT}") from None
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    return prepare_pt2e, convert_pt2e, quantizer


@contextlib.contextmanager
def _quiet_import():
    """torchao's import logs a deprecation warning of torch's own (``register_constant`` on an Enum) to stderr."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
