"""The types every layer above passes around; they import nothing heavier than the standard library.

``DataConfig`` is the one description of how an image becomes a model's input. It uses timm's
data-config keys and reads like a mapping, so ``timm.data.create_transform(**config)`` takes it as
it is — the same config that deitctl evaluates with is the one written beside the weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "model_ema.safetensors"
ONNX = "model.onnx"  # beside CONFIG in an ONNX export
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig(Mapping):
    """Channels × size, normalisation, eval crop ratio and resize interpolation of a model's input."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    @property
    def channels(self) -> int:
        return int(self.input_size[0])

    @property
    def size(self) -> int:
        return int(self.input_size[-1])

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: DataConfig | None = None) -> DataConfig:
        """The keys of ``values`` that are data-config keys (a timm ``pretrained_cfg``, say) over ``base``."""
        known = {f.name for f in fields(cls)}
        picked = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known and v is not None}
        return replace(base or cls(), **picked)

    def with_size(self, size: int, channels: int | None = None) -> DataConfig:
        return replace(self, input_size=(channels or self.channels, size, size))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # Mapping: timm's functions take data configs as keyword arguments
    def __getitem__(self, key: str) -> Any:
        if key not in self.as_dict():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(fields(self))


@dataclass
class LoadedModel:
    """A model ready to run (eval mode, on the CPU) with what is known about it."""

    model: nn.Module
    arch: str
    source: str
    label_names: list[str] | None = None
    data_config: DataConfig = field(default_factory=DataConfig)
    model_args: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # local directory, when there is one
    runtime: str = "torch"  # or "onnxruntime[-int8]": an exported file that runs in the precision it was exported with

    def require_torch(self, purpose: str) -> None:
        """Refuse an ONNX export where the PyTorch model is needed (teaching, exporting again)."""
        if self.runtime != "torch":
            raise UsageError(f"{self.source} is an ONNX export, which cannot {purpose}; "
                             "pass the run or model directory it was exported from")

    def check_runtime(self, precision: str, compile_model: bool) -> str:
        """The precision to run at: an ONNX file fixes its own, so only auto/fp32 and no compile are accepted."""
        if self.runtime == "torch":
            return precision
        if precision == "int8":
            raise UsageError(f"{self.source} is an ONNX model, which runs int8 only if exported so: "
                             "deitctl export --format onnx --quantize int8 (or pass the PyTorch model)")
        if precision not in ("auto", "fp32") or compile_model:
            raise UsageError(f"{self.source} is an ONNX model: it runs in the precision it was exported with "
                             "(fp32 in, fp32 out); drop --precision/--compile, or pass the PyTorch model")
        return "fp32"

    @property
    def num_classes(self) -> int:
        return self.model.num_classes
