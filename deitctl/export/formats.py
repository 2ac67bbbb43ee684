"""The same weights in the formats other tools read, each checked before it is kept.

  * ``safetensors``: timm's own ``config.json`` + ``model.safetensors``; checked by rebuilding the
    model with plain ``timm.create_model("local-dir:OUT", pretrained=True)``.
  * ``onnx``: ``model.onnx`` + the timm ``config.json`` (labels, data config), see
    :mod:`deitctl.export.onnx` (portable fp32, or int8 for ONNX Runtime on CPUs with ``--quantize int8``);
    checked with ONNX Runtime at two batch sizes.
  * ``transformers``: see :mod:`deitctl.export.transformers`; checked with transformers when installed.

An export whose outputs differ from PyTorch by more than the tolerance is an error, and nothing is
written: the output is built in a temporary directory and only moved into place once every check passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.atomic import atomic_dir
from deitctl.core.console import log
from deitctl.export.parity import INT8_RELATIVE_TOLERANCE, Runner, check_parity, compare

if TYPE_CHECKING:
    import torch

    from deitctl.models.types import LoadedModel

FORMATS = ("safetensors", "onnx", "transformers")


@dataclass
class ExportResult:
    format: str
    path: str
    files: list[str]
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per input set
    tolerance: float = 0.0
    verified_with: str = ""
    quantize: str | None = None
    float_max_abs_diff: dict[str, float] | None = None  # int8: the float graph, checked at ``tolerance``
    relative_diff: dict[str, float] | None = None  # int8: max |Δlogit| / max |logit|, checked at 10 %

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_checked(loaded: LoadedModel, fmt: str, out: Path, inputs: dict[str, torch.Tensor], tolerance: float,
                  overwrite: bool = False, quantize: str | None = None) -> ExportResult:
    """Write ``loaded`` as ``fmt`` into ``out`` and verify it on ``inputs``; raise (writing nothing) when it differs.

    ``quantize="int8"`` (ONNX only): the float graph is checked at ``tolerance`` before quantization;
    the int8 file, whose logits legitimately differ by a few percent, is checked for a relative
    difference under ``INT8_RELATIVE_TOLERANCE`` (a broken file, not rounding, fails that).
    """
    result = ExportResult(fmt, str(out), [], tolerance=tolerance, quantize=quantize)

    def check_float(runner: Runner) -> None:
        result.float_max_abs_diff = compare(loaded.model, runner, inputs)[0]
        check_parity(result.float_max_abs_diff, tolerance, f"{fmt} (float graph)")

    with atomic_dir(out, overwrite=overwrite) as tmp:
        if fmt == "onnx":
            from deitctl.export.onnx import write_onnx

            candidate, result.verified_with = write_onnx(loaded, tmp, quantize, check_float)
        else:
            writer = {"safetensors": _write_safetensors, "transformers": _write_transformers}[fmt]
            candidate, result.verified_with = writer(loaded, tmp)
        result.max_abs_diff, relative = compare(loaded.model, candidate, inputs) if candidate else ({}, {})
        if quantize:
            result.relative_diff = relative
            check_parity(relative, INT8_RELATIVE_TOLERANCE, f"{fmt} {quantize}",
                         bound=f"relative to the largest logit; int8 is allowed {INT8_RELATIVE_TOLERANCE:g}")
        else:
            check_parity(result.max_abs_diff, tolerance, fmt)
        result.files = sorted(p.name for p in tmp.iterdir())
    return result


def _write_safetensors(loaded: LoadedModel, out: Path) -> tuple[Runner, str]:
    import timm

    from deitctl.models.store import save_model_dir

    save_model_dir(loaded.model, out, loaded.label_names, loaded.data_config)
    rebuilt = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    return rebuilt, f"timm {timm.__version__} (local-dir:)"


def _write_transformers(loaded: LoadedModel, out: Path) -> tuple[Runner | None, str]:
    from deitctl.export.transformers import load_transformers, save_transformers

    save_transformers(loaded, out)
    model = load_transformers(out)
    if model is None:
        log("transformers is not installed: the export was written but not verified")
        return None, ""
    import transformers

    return (lambda x: model(pixel_values=x).logits), f"transformers {transformers.__version__}"
