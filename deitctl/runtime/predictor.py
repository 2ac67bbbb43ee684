"""Inference for a model that will not train again: cast whole (or quantized), optionally compiled frozen."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from deitctl.core.console import log
from deitctl.models.inspect import head_logits
from deitctl.runtime.compile import compile_in_place, first_call, fresh_compiler
from deitctl.runtime.precision import autocast, dtype_of

if TYPE_CHECKING:
    import torch
    from torch import nn


class Predictor:
    """images → (fused, class-head, distillation-head) float32 logits, for a model that will not train again.

    fp32/bf16/fp16: the model is cast to the dtype in place (pure bf16 inference ran 1.4× faster than autocast
    for DeiT-Ti on a CPU) and, with ``compile_model``, frozen and compiled. int8 (``runtime.quantize``): at the
    first call the model is quantized, calibrated on ``calibration`` (batches shaped like the first; default:
    that first batch itself, enough for a speed measurement), and compiled; what stays unquantized (softmax,
    norms, GELU) runs in fp32, which measured as fast as bf16 there. The first call compiles, or finds
    it cannot and runs eagerly from then on. A batch smaller than the first (a loader's last) is padded to the
    first one's size, so a compiled model is not compiled a second time for one batch.
    """

    def __init__(self, model: nn.Module, precision: str, device: torch.device, compile_model: bool = False,
                 calibration: Iterable[torch.Tensor] | None = None) -> None:
        import torch
        from torch import nn

        class Heads(nn.Module):  # one module to compile: the features and both heads of a distilled model
            def __init__(self) -> None:
                super().__init__()
                self.net = model

            def forward(self, x: torch.Tensor) -> Any:
                return head_logits(self.net, x)

        self.int8 = precision == "int8"
        self.device, self.compiled = device, compile_model or self.int8
        self.dtype = torch.float32 if self.int8 else dtype_of(precision)
        self.calibration = calibration
        if self.int8:
            from deitctl.runtime.quantize import require_torchao

            autocast(precision, device)  # the one check of a precision against its device: int8 on the CPU only
            require_torchao()
        model.eval().to(device=device, dtype=self.dtype)
        self.heads: nn.Module = Heads()
        self.batch = 0
        if self.compiled:  # one predictor per evaluation or benchmark row: the run's only compiled module
            fresh_compiler()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if not self.batch:
            self.batch = images.shape[0]
            if self.int8:
                self._quantize(images)
            if self.compiled:
                compile_in_place(self.heads)
                out: dict[str, Any] = {}
                with warnings.catch_warnings():  # inductor's int8 lowering copies a tensor the way torch warns of
                    warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
                    self.compiled = first_call(self.heads, lambda: out.update(logits=self._run(images)), "model",
                                               frozen=True, cpp_wrapper=self.int8)
                if self.compiled:
                    return out["logits"]
        return self._run(images)

    def _quantize(self, images: torch.Tensor) -> None:
        from deitctl.runtime.quantize import quantize_int8

        example = self._input(images)
        batches = (self._input(b) for b in (self.calibration or [images]))
        log("int8: quantizing linear and conv layers (static, per-channel weights), calibrating on "
            f"{'the given images' if self.calibration else 'the first batch'}; other ops in fp32")
        self.heads = quantize_int8(self.heads, example, batches)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        """The batch on the device in the model's dtype, padded to the first batch's size when compiled."""
        import torch

        x = images.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.compiled and x.shape[0] < self.batch:
            x = torch.cat([x, x.new_zeros((self.batch - x.shape[0], *x.shape[1:]))])
        return x

    def _run(self, images: torch.Tensor) -> Any:
        n = images.shape[0]
        out = self.heads(self._input(images))
        return tuple(None if t is None else t[:n].float() for t in out)
