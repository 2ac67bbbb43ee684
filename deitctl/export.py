"""``deitctl export``: the same weights in the formats other tools read, each checked before it is kept.

Every format is verified against the PyTorch model it came from, on the inputs a deployment sees:
seeded random tensors, flat (constant) images, and real images (``--dataset``, else synthetic
gradients/shapes) passed through the model's own eval preprocessing. An export whose outputs differ
by more than ``--tolerance`` is an error, and nothing is written (the output is built in a
temporary directory and only moved into place once every check passed).

  * ``safetensors``: timm's own ``config.json`` + ``model.safetensors``; checked by rebuilding the
    model with plain ``timm.create_model("local-dir:OUT", pretrained=True)``.
  * ``onnx``: ``model.onnx`` + the timm ``config.json`` (labels, mean/std), see
    :mod:`deitctl.export_onnx` (portable fp32, or int8 for ONNX Runtime on CPUs with ``--quantize int8``);
    checked with ONNX Runtime at two batch sizes.
  * ``transformers``: see :mod:`deitctl.export_transformers`; checked with transformers when installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.atomic import atomic_dir
from deitctl.console import log
from deitctl.errors import DeitctlError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.modelref import LoadedModel

FORMATS = ("safetensors", "onnx", "transformers")
INT8_RELATIVE_TOLERANCE = 0.1  # an int8 file may differ by 10 % of the largest |logit|: catches broken files only


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


def export_model(
    ref: str,
    fmt: str,
    out: Path,
    ema: bool = False,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    dataset: str | None = None,
    split: str = "test",
    quantize: str | None = None,
) -> ExportResult:
    """Load any model reference, write it as ``fmt`` into ``out`` and verify it; raise when it differs.

    ``quantize="int8"`` (ONNX only): the float graph is checked at ``tolerance`` before quantization;
    the int8 file, whose logits legitimately differ by a few percent, is checked for a relative
    difference under ``INT8_RELATIVE_TOLERANCE`` (a broken file, not rounding, fails that).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if quantize and fmt != "onnx":
        raise UsageError(f"--quantize applies to --format onnx only (not {fmt})")
    if tolerance < 0:
        raise UsageError(f"--tolerance must be >= 0 (got {tolerance})")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; choose another --out or pass --overwrite")
    from deitctl.modelref import load_model

    loaded = load_model(ref, ema=ema)
    loaded.require_torch("be exported again")
    inputs = parity_inputs(loaded, dataset, split)
    result = ExportResult(fmt, str(out), [], tolerance=tolerance, quantize=quantize)

    def check_float(runner: Runner) -> None:
        result.float_max_abs_diff = compare(loaded.model, runner, inputs)[0]
        check_parity(result.float_max_abs_diff, tolerance, f"{fmt} (float graph)")

    with atomic_dir(out, overwrite=overwrite) as tmp:
        if fmt == "onnx":
            candidate, result.verified_with = _write_onnx(loaded, tmp, quantize, check_float)
        else:
            writer = {"safetensors": _write_safetensors, "transformers": _write_transformers}[fmt]
            candidate, result.verified_with = writer(loaded, tmp)
        result.max_abs_diff, relative = compare(loaded.model, candidate, inputs) if candidate else ({}, {})
        if quantize:
            result.relative_diff = relative
            check_parity(relative, INT8_RELATIVE_TOLERANCE, f"{fmt} {quantize} (relative)")
        else:
            check_parity(result.max_abs_diff, tolerance, fmt)
        result.files = sorted(p.name for p in tmp.iterdir())
    return result


# --------------------------------------------------------------------------------------- writers
Runner = Callable[["torch.Tensor"], "torch.Tensor"]


def _write_safetensors(loaded: LoadedModel, out: Path) -> tuple[Runner, str]:
    import timm

    from deitctl.modelref import save_model_dir

    dc = loaded.data_config
    save_model_dir(loaded.model, out, loaded.label_names, dc.get("mean"), dc.get("std"), dc.get("crop_pct"))
    rebuilt = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    return rebuilt, f"timm {timm.__version__} (local-dir:)"


def _write_onnx(loaded: LoadedModel, out: Path, quantize: str | None = None, check_float: Any = None
                ) -> tuple[Runner, str]:
    from deitctl.export_onnx import write_onnx

    return write_onnx(loaded, out, quantize, check_float)


def _write_transformers(loaded: LoadedModel, out: Path) -> tuple[Runner | None, str]:
    from deitctl.export_transformers import load_transformers, save_transformers

    save_transformers(loaded, out)
    model = load_transformers(out)
    if model is None:
        log("transformers is not installed: the export was written but not verified")
        return None, ""
    import transformers

    return (lambda x: model(pixel_values=x).logits), f"transformers {transformers.__version__}"


# ---------------------------------------------------------------------------------------- parity
def _input_size(loaded: LoadedModel) -> tuple[int, int, int]:
    from deitctl.models import input_size

    return input_size(loaded.model)


def parity_inputs(loaded: LoadedModel, dataset: str | None = None, split: str = "test", n: int = 8) -> dict[str, torch.Tensor]:
    """Named input batches: random noise, flat images, and real (or realistic) preprocessed images."""
    import torch

    from deitctl.transforms import eval_transform

    c, h, _ = _input_size(loaded)
    dc = loaded.data_config
    transform = eval_transform(h, dc.get("mean", (0.5,) * c), dc.get("std", (0.5,) * c), c,
                               dc.get("crop_pct", 0.875), dc.get("interpolation", "bicubic"))
    gen = torch.Generator().manual_seed(0)
    images = _dataset_images(dataset, split, c, n) if dataset else _synthetic_images(n, h, c)
    mode = "L" if c == 1 else "RGB"
    flat = [_flat_image(v, h, mode) for v in (0, 128, 255)]
    return {
        "random": torch.randn(n, c, h, h, generator=gen),
        "constant": torch.stack([transform(img) for img in flat]),
        "dataset" if dataset else "synthetic": torch.stack([transform(img) for img in images]),
    }


def _flat_image(value: int, size: int, mode: str):
    from PIL import Image

    return Image.new(mode, (size, size), value if mode == "L" else (value,) * 3)


def _synthetic_images(n: int, size: int, channels: int) -> list:
    """Natural-looking test images (smooth gradients and shapes) without any dataset at hand."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    out = []
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        base = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(80, 200)
        arr = np.stack([base + rng.uniform(0, 55) for _ in range(3)], -1).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        draw = ImageDraw.Draw(img)
        x0, y0 = rng.integers(0, size // 2, 2)
        shape = draw.ellipse if i % 2 else draw.rectangle
        shape([int(x0), int(y0), int(x0) + size // 3, int(y0) + size // 3], fill=tuple(rng.integers(0, 255, 3).tolist()))
        out.append(img.convert("L" if channels == 1 else "RGB"))
    return out


def _dataset_images(dataset: str, split: str, channels: int, n: int) -> list:
    from deitctl.data import load_split, subset
    from deitctl.samples import decode_image

    part = subset(load_split(dataset, split), n)
    mode = "L" if channels == 1 else "RGB"
    return [decode_image(v, mode, i) for i, v in enumerate(part.dataset[part.image_column])]


def compare(reference: nn.Module, candidate: Runner, inputs: dict[str, torch.Tensor]
            ) -> tuple[dict[str, float], dict[str, float]]:
    """Per input set, the max absolute logit difference, and the same divided by the reference's
    largest absolute logit (each set is also run one sample at a time: batch 1)."""
    import torch

    absolute: dict[str, float] = {}
    relative: dict[str, float] = {}
    with torch.no_grad():
        for name, x in inputs.items():
            want = reference(x).float()
            got = torch.cat([candidate(x[:1]), candidate(x[1:])]).float()  # two batch sizes: dynamic batch works
            if got.shape != want.shape:
                raise DeitctlError(f"exported model returns shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
            diff = (got - want).abs().max()
            absolute[name] = float(diff)
            relative[name] = float(diff / want.abs().max().clamp_min(1e-12))
    return absolute, relative


def check_parity(diffs: dict[str, float], tolerance: float, fmt: str) -> None:
    """Refuse an export that does not reproduce the model (the caller then leaves nothing on disk)."""
    worst = max(diffs, key=diffs.__getitem__, default=None)
    if worst is not None and (diffs[worst] > tolerance or diffs[worst] != diffs[worst]):
        raise DeitctlError(
            f"{fmt} export differs from PyTorch by {diffs[worst]:.3g} on {worst} inputs (--tolerance {tolerance:g}); "
            "nothing was written — raise --tolerance if this difference is acceptable"
        )
