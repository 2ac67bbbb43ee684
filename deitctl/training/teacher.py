"""The teacher of distillation through attention: frozen, in eval mode, fed the student's own input.

The student's batch is already normalised with the student's mean/std; a teacher trained with
other statistics gets the batch re-normalised to its own, so both see the same image.

A teacher never trains, which makes it the cheapest place to go fast (see ``deitctl.runtime``):
its weights are cast whole to the run's precision, convolutions run channels-last (the layout
oneDNN and cuDNN want), it runs under ``inference_mode`` and it can be compiled with its weights
frozen in. With the paper's RegNetY-16GF teacher it is ~80 % of a DeiT-Ti⚗ step's arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence


class Teacher(nn.Module):
    """Wraps a loaded model: re-normalises the input and never trains or builds a graph."""

    def __init__(self, model: nn.Module, student_mean: Sequence[float], student_std: Sequence[float],
                 teacher_mean: Sequence[float], teacher_std: Sequence[float]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        c = len(student_mean)
        to_t = lambda v: torch.tensor([float(x) for x in v]).view(1, -1, 1, 1)  # noqa: E731
        sm, ss, tm, ts = (to_t(v) for v in (student_mean, student_std, teacher_mean, teacher_std))
        tm, ts = (t if t.shape[1] == c else t.mean().expand(1, c, 1, 1) for t in (tm, ts))
        # x_t = (x_s * std_s + mean_s - mean_t) / std_t  =  x_s * scale + shift
        self.renorm = not (torch.allclose(sm, tm) and torch.allclose(ss, ts))
        self.register_buffer("scale", ss / ts, persistent=False)
        self.register_buffer("shift", (sm - tm) / ts, persistent=False)

        self.precision, self.dtype, self.compiled = "fp32", torch.float32, False
        self.memory_format = torch.channels_last  # benchmarks/bench_frozen.py times torch.contiguous_format against it

    def train(self, mode: bool = True) -> Teacher:  # the teacher stays in eval mode, always
        return super().train(False)

    def prepare(self, device: torch.device, precision: str, compile_model: bool) -> Teacher:
        """Move to ``device`` in the run's precision (bf16/fp16 weights, not autocast), channels-last,
        and optionally compiled with frozen weights; the first call then compiles."""
        from deitctl.runtime.compile import compile_in_place
        from deitctl.runtime.precision import dtype_of

        self.precision, self.dtype, self.compiled = precision, dtype_of(precision), compile_model
        self.to(device)
        self.model.to(dtype=self.dtype, memory_format=self.memory_format)
        if compile_model:
            compile_in_place(self.model)  # frozen at its first call: speed.first_call(..., frozen=True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits that autograd may keep (hard targets are saved by the student's loss)."""
        with torch.inference_mode():
            if self.renorm:
                x = x * self.scale + self.shift
            logits = self.model(x.to(self.dtype).contiguous(memory_format=self.memory_format))
        return logits.to(torch.float32, copy=True)  # a copy made outside inference mode is a normal tensor

    def fingerprint(self) -> str:
        """A digest of what the teacher computes from its input: the model's class, every parameter and buffer
        (names, shapes, dtypes, bytes — in the precision it runs in) and the re-normalisation. A teacher-output
        store is keyed by it: another teacher, or the same one retrained, never reads this one's outputs.
        Hashing reads every weight once (RegNetY-16GF, 84 M fp32 parameters: 0.7 s on one busy AVX2 core); done only for the store."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        h.update(f"{type(self.model).__module__}.{type(self.model).__qualname__} renorm {self.renorm}".encode())
        tensors = [(name, t) for name, t in self.model.state_dict().items()] + [("scale", self.scale),
                                                                                ("shift", self.shift)]
        for name, t in tensors:
            flat = t.detach().reshape(-1).contiguous().cpu()
            h.update(f"{name} {tuple(t.shape)} {t.dtype};".encode())
            h.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
        return h.hexdigest()


def load_teacher(ref: str, num_classes: int, in_chans: int, mean: Sequence[float], std: Sequence[float]) -> Teacher:
    """Load any model reference as a teacher; refuse one whose classes or channels do not fit the data."""
    from deitctl.models.inspect import input_size
    from deitctl.models.refs import load_model

    loaded = load_model(ref)
    loaded.require_torch("be a teacher")
    if loaded.num_classes != num_classes:
        raise UsageError(f"teacher '{ref}' predicts {loaded.num_classes} classes but the dataset has {num_classes}; "
                         "train or fine-tune a teacher on this dataset and pass it with --teacher")
    channels = input_size(loaded.model)[0]
    if channels != in_chans:
        raise UsageError(f"teacher '{ref}' takes {channels}-channel images but the student {in_chans}; "
                         "use a teacher trained on the same kind of images")
    return Teacher(loaded.model, mean, std, loaded.data_config.mean, loaded.data_config.std)
