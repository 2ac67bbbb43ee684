"""``deitctl export``: load any model reference, write it in another format, check it (``deitctl.export``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deitctl.core.errors import UsageError
from deitctl.export.formats import FORMATS, ExportResult, write_checked


@dataclass
class ExportRequest:
    model: str
    format: str
    out: Path
    ema: bool = False
    overwrite: bool = False
    tolerance: float = 1e-4  # max abs logit difference against PyTorch
    dataset: str | None = None  # check parity on real images of this dataset too
    split: str = "test"
    quantize: str | None = None  # int8: ONNX only


def run(req: ExportRequest) -> ExportResult:
    from deitctl.export.parity import parity_inputs
    from deitctl.models.refs import load_model

    if req.format not in FORMATS:
        raise UsageError(f"unknown export format '{req.format}'; choose one of: {', '.join(FORMATS)}")
    if req.quantize and req.format != "onnx":
        raise UsageError(f"--quantize applies to --format onnx only (not {req.format})")
    if req.tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 (got {req.tolerance})")
    if req.out.exists() and not req.overwrite:
        raise UsageError(f"{req.out} already exists; choose another --out or pass --overwrite")
    loaded = load_model(req.model, ema=req.ema)
    loaded.require_torch("be exported again")
    inputs = parity_inputs(loaded, req.dataset, req.split)
    return write_checked(loaded, req.format, req.out, inputs, req.tolerance, req.overwrite, req.quantize)
