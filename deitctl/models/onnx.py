"""An exported ONNX model run by ONNX Runtime, usable wherever deitctl takes a model.

``deitctl export --format onnx`` writes ``model.onnx`` beside timm's ``config.json``; loading such a
directory gives a module whose forward calls ONNX Runtime, so ``deitctl eval`` measures the accuracy of
the file you deploy and ``deitctl bench`` its speed, with the same data pipeline and timing code as
the PyTorch model. The file fixes its own precision (fp32, or int8 after ``--quantize int8``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deitctl.core.errors import UsageError
from deitctl.models.store import read_config, saved_data_config
from deitctl.models.types import ONNX, DataConfig, LoadedModel

INPUT, OUTPUT = "pixel_values", "logits"


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation on and torch's thread count."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("ONNX models need onnxruntime: pip install 'deitctl[onnx]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """A frozen ONNX Runtime session behind ``nn.Module``'s call: float32 images in, float32 logits out."""

    def __init__(self, path: Path, num_classes: int) -> None:
        super().__init__()
        self.path, self.num_classes = path, num_classes
        self.session = session(path)

    def __deepcopy__(self, memo: dict) -> OnnxModel:  # a session holds no state a run could change
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to("cpu", torch.float32).contiguous()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0])


def load_onnx_dir(path: Path) -> LoadedModel:
    """The directory's ONNX model with its labels and preprocessing from ``config.json``."""
    cfg = read_config(path)
    model = OnnxModel(path / ONNX, int(cfg["num_classes"]))
    labels = cfg.get("label_names") or (cfg.get("pretrained_cfg") or {}).get("label_names")
    quantize = (cfg.get("onnx") or {}).get("quantize")
    return LoadedModel(model, cfg["architecture"], str(path), labels, saved_data_config(cfg, DataConfig()),
                       dict(cfg.get("model_args") or {}), path, runtime="onnxruntime" + (f"-{quantize}" if quantize else ""))
