"""The on-disk model format: exactly what timm itself writes and reads (``save_for_hf`` / ``local-dir:``).

A model directory is ``config.json`` (architecture, model_args, pretrained_cfg with the data config,
label_names) + ``model.safetensors``; a run directory is a model directory plus its records. Plain
``timm.create_model("local-dir:DIR", pretrained=True)`` rebuilds the same model from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.atomic import disk_full_guard
from deitctl.core.errors import DeitctlError, UsageError
from deitctl.models.types import CONFIG, EMA_WEIGHTS, ONNX, WEIGHTS, DataConfig, LoadedModel

if TYPE_CHECKING:
    import torch
    from torch import nn


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def is_onnx_dir(path: Path) -> bool:
    return path.is_dir() and (path / ONNX).is_file() and (path / CONFIG).is_file()


def read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path / CONFIG}: unreadable model config ({e})") from None
    if "architecture" not in cfg:
        raise UsageError(f"{path / CONFIG}: not a timm model config (no 'architecture')")
    return cfg


def saved_data_config(cfg: dict[str, Any], base: DataConfig, keep_size: bool = True) -> DataConfig:
    """The config's recorded preprocessing over ``base`` (the model as built); ``keep_size=False`` keeps
    ``base``'s input size (the model was rebuilt at another resolution)."""
    pcfg = dict(cfg.get("pretrained_cfg") or {})
    if not keep_size:
        pcfg.pop("input_size", None)
    return DataConfig.from_dict(pcfg, base)


def load_model_dir(
    path: Path, num_classes: int | None = None, img_size: int | None = None, ema: bool = False, **overrides: Any
) -> LoadedModel:
    """Rebuild a model from its directory; a new class count or resolution adapts the weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from deitctl.models.adapt import load_adapted
    from deitctl.models.factory import build
    from deitctl.models.inspect import data_config

    cfg = read_config(path)
    arch = cfg["architecture"]
    args = dict(cfg.get("model_args") or {})
    args.pop("img_size", None) if img_size else None
    saved_classes = cfg.get("num_classes", args.get("num_classes"))
    args["num_classes"] = num_classes or saved_classes
    args.update(overrides)
    pcfg = cfg.get("pretrained_cfg") or {}
    size = img_size or (args.pop("img_size", None) or pcfg.get("input_size", [3, 224, 224])[1:])
    size = size[0] if isinstance(size, (list, tuple)) else size
    model = build(arch, img_size=size, **args)
    weights = path / (EMA_WEIGHTS if ema else WEIGHTS)
    if not weights.is_file():
        raise UsageError(f"{weights} not found" + ("; the run kept no EMA (recipe ema: false)" if ema else ""))
    try:
        state = load_file(str(weights))
    except SafetensorError as e:
        raise DeitctlError(f"{path}: {weights.name} is not a readable safetensors file ({e}); replace it (pull or "
                           "export it again)") from None
    if (num_classes and num_classes != saved_classes) or img_size:
        load_adapted(model, state)
    else:
        _load_strict(model, state, str(path))
    labels = cfg.get("label_names") or pcfg.get("label_names")
    if num_classes and num_classes != saved_classes:
        labels = None
    model.eval()
    # convnets take any size, so only the saved config knows the resolution they were trained at
    dc = saved_data_config(cfg, data_config(model), keep_size=not img_size)
    return LoadedModel(model, arch, str(path), labels, dc, args, path)


def check_model_dir(path: Path) -> None:
    """Refuse a directory whose weights do not fit its config (naming the tensor) or do not read at all."""
    load_model_dir(path)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    target = model.state_dict()
    bad = [k for k, v in state.items() if k in target and v.shape != target[k].shape]
    missing = sorted(set(target) - set(state))
    extra = sorted(set(state) - set(target))
    if bad or missing or extra:
        what = (
            f"shape of '{bad[0]}' is {tuple(state[bad[0]].shape)} in the weights but "
            f"{tuple(target[bad[0]].shape)} in the config"
            if bad
            else f"missing '{missing[0]}'"
            if missing
            else f"unexpected '{extra[0]}'"
        )
        raise DeitctlError(f"{source}: config does not match weights ({what}); re-export the model")
    model.load_state_dict(state)


def save_model_dir(
    model: nn.Module,
    out: str | Path,
    label_names: list[str] | None = None,
    data_config: DataConfig | None = None,
    weights_name: str = WEIGHTS,
    **data_overrides: Any,
) -> Path:
    """Write ``config.json`` + weights in timm's format, atomically (temp dir, then rename each file).

    ``data_config`` (default: the model as built) with ``data_overrides`` (e.g. ``mean=(0.5,)``) is the
    preprocessing recorded in ``pretrained_cfg``: it must be what the weights were trained and are
    evaluated with — a convnet's config would otherwise keep its architecture default (224, crop 0.875).
    """
    import os
    import tempfile

    from timm.models import save_for_hf

    from deitctl.models.inspect import data_config as built_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dc = DataConfig.from_dict(data_overrides, data_config or built_config(model))
    model_config: dict[str, Any] = {"pretrained_cfg": {"tag": "deitctl", "license": "apache-2.0"}}
    if label_names:
        model_config["label_names"] = list(label_names)
    needed = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with tempfile.TemporaryDirectory(dir=out, prefix=".save.") as tmp, disk_full_guard(out / weights_name, needed):
        save_for_hf(model, tmp, model_config=model_config, safe_serialization=True, data_config=dc.as_dict())
        os.replace(Path(tmp) / WEIGHTS, out / weights_name)
        if weights_name == WEIGHTS:
            os.replace(Path(tmp) / CONFIG, out / CONFIG)
    return out
