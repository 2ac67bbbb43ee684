"""ONNX export: the portable fp32 file, and an int8 file made for ONNX Runtime on CPUs.

fp32 (default): opset 18, timm's plain attention (MatMul, Softmax, MatMul), which every ONNX runtime
runs; fixed resolution, dynamic batch, input ``pixel_values``, output ``logits`` (a distilled model
exports its fused prediction, the mean of both heads), timm's ``config.json`` beside it.

int8 (``--quantize int8``): ONNX Runtime's CPU provider has no bf16 arithmetic, and its fp32 GEMMs
already run near the cores' fp32 peak, so a faster CPU file needs lower precision. Attention is exported
as one opset-23 ``Attention`` node on (batch, tokens, channels) tensors, which removes the per-head
transposes around it; then every MatMul/Gemm weight is quantized to int8 per output channel, with
activations quantized on the fly (dynamic quantization: no calibration data). The float graph is
checked against PyTorch before it is quantized. Measured speed and accuracy: docs/performance.md.

Where the exporting CPU has no VNNI (AVX2, plain AVX-512), weights use 7 bits (``reduce_range``): ONNX Runtime's
int8 kernel there multiplies with VPMADDUBSW, whose int16 sums saturate with full-range weights — measured on an
AVX2 EPYC, a DeiT-Ti file with 8-bit weights differed from PyTorch by 0.255 (relative) and was refused. The file
records which (``config.json`` → ``onnx.weight_bits``); an 8-bit file made on a VNNI CPU should be exported again
for AVX2-only machines.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.models.types import LoadedModel

OPSET = 18  # the first opset torch's exporter implements natively (no version conversion)
OPSET_ATTENTION = 23  # the first with an Attention operator
QUANTIZE = ("int8",)


def write_onnx(loaded: LoadedModel, out: Path, quantize: str | None = None,
               check_float: Any = None) -> tuple[nn.Module, str]:
    """Write ``model.onnx`` + ``config.json`` into ``out``; return an ONNX Runtime module of the file.

    ``check_float(runner)`` is called on the float graph before it is quantized (parity with PyTorch).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("ONNX export needs onnx and onnxruntime: pip install 'deitctl[onnx]'") from None
    from deitctl.models.onnx import OnnxModel
    from deitctl.models.types import ONNX

    if quantize not in (None, *QUANTIZE):
        raise UsageError(f"unknown --quantize '{quantize}'; choose one of: {', '.join(QUANTIZE)}")
    final = out / ONNX
    if quantize is None:
        _export(exportable_copy(loaded.model), loaded, final, OPSET)
    else:
        float_file = out / "model.float.onnx"
        _export(attention_op_copy(loaded.model), loaded, float_file, OPSET_ATTENTION)
        if check_float is not None:
            check_float(OnnxModel(float_file, loaded.num_classes))
        bits = _quantize_int8(float_file, final)
        float_file.unlink()
    info = {"opset": OPSET if quantize is None else OPSET_ATTENTION, "quantize": quantize}
    _write_config(loaded, out, info if quantize is None else {**info, "weight_bits": bits})
    return OnnxModel(final, loaded.num_classes), f"onnxruntime {ort.__version__}"


def _export(model: nn.Module, loaded: LoadedModel, path: Path, opset: int) -> None:
    import torch

    c, h, w = loaded.data_config.input_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        try:
            program = torch.onnx.export(
                model, (torch.zeros(2, c, h, w),), None, input_names=["pixel_values"], output_names=["logits"],
                opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=({0: batch},),
            )
        except Exception as e:  # the exporter raises many kinds; the message is what the user needs
            raise DeitctlError(f"ONNX export of {loaded.arch} failed: {first_line(e)}; "
                               "re-run with --debug for details") from e
        program.save(str(path))


def _quantize_int8(src: Path, dst: Path) -> int:
    """Quantize the MatMul/Gemm weights of ``src`` into ``dst``; returns the weight bits used (8, or 7 without VNNI)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from deitctl.runtime.hardware import cpu

    reduce_range = not cpu().vnni
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                         op_types_to_quantize=["MatMul", "Gemm"],
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})  # Attention's output type
    return 7 if reduce_range else 8


def _write_config(loaded: LoadedModel, out: Path, onnx_info: dict[str, Any]) -> None:
    """timm's config.json beside a non-timm file: label names and preprocessing travel with the model,
    plus an ``onnx`` entry (opset, quantization) that ``deitctl eval``/``bench`` report."""
    import json

    from timm.models._hub import save_config_for_hf

    model_config: dict[str, Any] = {"pretrained_cfg": {"tag": "deitctl", "license": "apache-2.0"}}
    if loaded.label_names:
        model_config["label_names"] = list(loaded.label_names)
    path = out / "config.json"
    save_config_for_hf(loaded.model, str(path), model_config=model_config, data_config=loaded.data_config.as_dict())
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "onnx": onnx_info}, indent=4) + "\n")  # inside the export's temp dir


# ------------------------------------------------------------------------------- attention forms
def exportable_copy(model: nn.Module) -> nn.Module:
    """A copy with timm's plain attention (what ``exportable=True`` selects): portable to every runtime."""
    from deitctl.runtime.attention import set_attention

    clone = copy.deepcopy(model).eval()
    set_attention(clone, "math")
    return clone


def attention_op_copy(model: nn.Module) -> nn.Module:
    """A copy whose timm attention blocks export as one ONNX ``Attention`` node on 3-D tensors.

    Only blocks without q/k normalisation or gating (all DeiT blocks) change; others keep their forward.
    """
    from timm.layers.attention import Attention

    clone = copy.deepcopy(model).eval()
    for module in clone.modules():
        plain = getattr(module, "gate", None) is None and all(
            type(getattr(module, n, None)).__name__ == "Identity" for n in ("q_norm", "k_norm"))
        if isinstance(module, Attention) and plain:
            module.forward = types.MethodType(_attention_3d, module)
    return clone


def _attention_3d(self: Any, x: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
    """timm's Attention.forward for inference, with q, k, v kept as (batch, tokens, heads × head_dim)."""
    import torch

    if attn_mask is not None or is_causal:
        raise DeitctlError("the int8 ONNX export supports unmasked self-attention only (DeiT's)")
    q, k, v = self.qkv(x).split(self.attn_dim, dim=-1)
    out = torch.onnx.ops.attention(q, k, v, q_num_heads=self.num_heads, kv_num_heads=self.num_heads,
                                   scale=self.scale)[0]
    return self.proj_drop(self.proj(self.norm(out)))


@contextlib.contextmanager
def _quiet():
    """The exporter and quantizer print progress on stdout and log warnings; keep stdout clean for ``--json``."""
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
