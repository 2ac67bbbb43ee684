"""One loader for every model reference the CLI accepts, and the one on-disk model format.

A model directory is what timm itself writes and reads (``save_for_hf`` / ``local-dir:``):
``config.json`` (architecture, model_args, pretrained_cfg, label_names) + ``model.safetensors``.
A run directory is a model directory plus ``recipe.yaml``, metrics and checkpoints.

References, in the order they are tried:
  * a directory holding ``config.json`` + ``model.safetensors`` (run or model directory),
  * a directory holding ``config.json`` + ``model.onnx`` (``deitctl export --format onnx``), run by ONNX Runtime,
  * ``ARCH:path.pth`` or ``path.pth`` — a legacy state dict (raw, or the authors' ``{"model": ...}``),
    read with ``torch.load(weights_only=True)``; DeiT architectures are inferred from the tensors,
  * ``org/name[@revision]`` — a Hub repo (downloaded as safetensors; no remote code, ever),
  * ``arch[.tag]`` — a timm model name, with pretrained weights from the Hub when a tag is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.errors import DeitctlError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
EMA_WEIGHTS = "model_ema.safetensors"
ONNX = "model.onnx"  # beside CONFIG in an ONNX export (deitctl/onnxrun.py)
_REPO_RE = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")


@dataclass
class LoadedModel:
    model: nn.Module
    arch: str
    source: str
    label_names: list[str] | None = None
    data_config: dict[str, Any] = field(default_factory=dict)  # input_size, mean, std, crop_pct, interpolation
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
        if precision not in ("auto", "fp32") or compile_model:
            raise UsageError(f"{self.source} is an ONNX model: it runs in the precision it was exported with "
                             "(fp32 in, fp32 out); drop --precision/--compile, or pass the PyTorch model")
        return "fp32"

    @property
    def num_classes(self) -> int:
        return self.model.num_classes


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def _is_onnx_dir(path: Path) -> bool:
    return (path / ONNX).is_file() and (path / CONFIG).is_file()


def read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path / CONFIG}: unreadable model config ({e})") from None
    if "architecture" not in cfg:
        raise UsageError(f"{path / CONFIG}: not a timm model config (no 'architecture')")
    return cfg


def _data_config(model: nn.Module) -> dict[str, Any]:
    from deitctl.models import input_config

    cfg = input_config(model)
    return {k: cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation") if k in cfg}


def load_model_dir(
    path: Path, num_classes: int | None = None, img_size: int | None = None, ema: bool = False, **overrides: Any
) -> LoadedModel:
    """Rebuild a model from its directory; a new class count or resolution adapts the weights."""
    from safetensors.torch import load_file

    from deitctl.models import create_by_name, load_adapted

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
    model = create_by_name(arch, img_size=size, **args)
    weights = path / (EMA_WEIGHTS if ema else WEIGHTS)
    if not weights.is_file():
        raise UsageError(f"{weights} not found" + ("; the run kept no EMA (recipe ema: false)" if ema else ""))
    state = load_file(str(weights))
    if (num_classes and num_classes != saved_classes) or img_size:
        load_adapted(model, state)
    else:
        _load_strict(model, state, str(path))
    labels = cfg.get("label_names") or pcfg.get("label_names")
    if num_classes and num_classes != saved_classes:
        labels = None
    model.eval()
    dc = _data_config(model)
    # convnets take any size, so only the saved config knows the resolution they were trained at
    keys = ("mean", "std", "crop_pct", "interpolation") + (() if img_size else ("input_size",))
    for k in keys:
        if k in pcfg:
            dc[k] = tuple(pcfg[k]) if isinstance(pcfg[k], list) else pcfg[k]
    return LoadedModel(model, arch, str(path), labels, dc, args, path)


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


# ------------------------------------------------------------------------------ legacy .pth files
def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``: weights only, so no pickled code can run.

    Besides tensors and plain containers we allow ``argparse.Namespace`` (inert data): the authors'
    training checkpoints store their command-line ``args`` beside ``model`` and ``optimizer``.
    """
    import argparse
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not found:  # garbage or a pickle opcode the safe loader lacks; torch's text says which
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
            reason = detail.group(1).strip() if detail else str(e).strip().splitlines()[0][:120]
            raise UsageError(f"{path}: not a readable PyTorch file ({reason}); expected a state dict "
                             "saved with torch.save") from None
        raise UsageError(
            f"{path}: refused to load: it holds a pickled '{found.group(1)}', not just tensors, and unpickling "
            "it could run code; where you trust the file, re-save the weights alone: "
            "torch.save(model.state_dict(), 'weights.pth')"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise UsageError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # the authors' checkpoint: {"model", "optimizer", "epoch", ...}
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise UsageError(f"{path}: no state dict inside (expected tensors by name)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def infer_deit(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """Guess the DeiT architecture of a state dict from its tensor shapes."""
    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise UsageError("cannot infer the architecture of this .pth; name it: ARCH:path.pth (e.g. regnety_160:t.pth)")
    dim = state["pos_embed"].shape[-1]
    proj = state["patch_embed.proj.weight"]
    patch, in_chans = proj.shape[-1], proj.shape[1]
    distilled = "dist_token" in state
    grid = round((state["pos_embed"].shape[1] - (2 if distilled else 1)) ** 0.5)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    head = state.get("head.weight")
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0] if "blocks.0.mlp.fc1.weight" in state else 4 * dim
    arch = "deit_base_distilled_patch16_224" if distilled else "deit_base_patch16_224"
    # the head count leaves no trace in the shapes: every DeiT uses 64 dimensions per head
    args = dict(embed_dim=dim, depth=depth, num_heads=max(1, dim // 64), mlp_ratio=hidden / dim, patch_size=patch,
                in_chans=in_chans, img_size=grid * patch, num_classes=head.shape[0] if head is not None else 0)
    return arch, args


def load_pth(ref: str, num_classes: int | None = None, img_size: int | None = None, **overrides: Any) -> LoadedModel:
    from deitctl.models import create_by_name, load_adapted

    arch, _, file = ref.rpartition(":") if re.match(r"^[\w.]+:", ref) else ("", "", ref)
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    state = read_pth(path)
    if arch:
        head = next((state[k] for k in ("head.weight", "fc.weight", "head.fc.weight", "classifier.weight") if k in state), None)
        args: dict[str, Any] = {"num_classes": head.shape[0]} if head is not None else {}
    else:
        arch, args = infer_deit(state)
    size = img_size or args.pop("img_size", None)
    args["num_classes"] = num_classes or args.get("num_classes", 1000)
    model = create_by_name(arch, img_size=size, **args, **overrides)
    load_adapted(model, state)
    model.eval()
    return LoadedModel(model, arch.split(".")[0], str(path), None, _data_config(model), args, None)


# ------------------------------------------------------------------------------------- dispatch
def hub_download(repo: str) -> Path:
    """Download a Hub repo's model files (safetensors + config only, verified) into the local cache."""
    from deitctl.hub import pull

    return pull(repo)


def load_model(
    ref: str, num_classes: int | None = None, img_size: int | None = None, ema: bool = False, **overrides: Any
) -> LoadedModel:
    """Resolve any model reference (see module docstring) to an eval-mode model on the CPU.

    ``overrides`` are extra ``timm.create_model`` arguments (e.g. ``drop_path_rate`` when fine-tuning).
    """
    path = Path(ref)
    if path.is_dir() and not is_model_dir(path) and _is_onnx_dir(path):
        from deitctl.onnxrun import load_onnx_dir

        if num_classes or img_size or ema or overrides:
            raise UsageError(f"{path} holds an ONNX export, which runs as exported: it cannot be adapted to other "
                             "classes or sizes, nor trained; use the PyTorch model it was exported from")
        return load_onnx_dir(path)
    if path.is_dir():
        if not is_model_dir(path):
            raise UsageError(f"{path}: not a model or run directory (needs {CONFIG} and {WEIGHTS}); "
                             "train one with `deitctl train` or export one with `deitctl export`")
        return load_model_dir(path, num_classes, img_size, ema, **overrides)
    if ref.endswith((".pth", ".pt", ".bin")):
        return load_pth(ref, num_classes, img_size, **overrides)
    if _REPO_RE.match(ref) and not ref.startswith((".", "/")):
        if path.parent.is_dir():  # "runs/typo": a local path that does not exist, not a Hub repo
            raise UsageError(f"{path}: no such run or model directory (and '{path.parent}' is a local folder, "
                             "so this is not read as a Hub repo); check the path")
        loaded = load_model_dir(hub_download(ref), num_classes, img_size, ema, **overrides)
        loaded.source = ref
        return loaded
    return load_timm(ref, num_classes, img_size, **overrides)


def load_timm(ref: str, num_classes: int | None = None, img_size: int | None = None, **overrides: Any) -> LoadedModel:
    """A timm name; ``arch.tag`` asks timm for published weights, which needs the Hub."""
    import timm

    from deitctl.models import check_arch, create_by_name

    arch = check_arch(ref)
    kwargs: dict[str, Any] = {"num_classes": num_classes, **overrides} if num_classes else dict(overrides)
    if "." not in ref:
        model = create_by_name(arch, img_size=img_size, **kwargs)
    else:
        try:
            model = timm.create_model(ref, pretrained=True, **kwargs)
        except Exception as e:  # timm raises many kinds (OSError, LocalEntryNotFoundError, RuntimeError)
            raise DeitctlError(
                f"could not fetch weights for '{ref}' ({type(e).__name__}): the Hub is unreachable or the tag "
                "is unknown; download them where the Hub is reachable (`deitctl pull`) and pass the directory"
            ) from None
    model.eval()
    return LoadedModel(model, arch, ref, None, _data_config(model), {}, None)


def save_model_dir(
    model: nn.Module,
    out: str | Path,
    label_names: list[str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    crop_pct: float | None = None,
    weights_name: str = WEIGHTS,
    input_size: tuple[int, int, int] | None = None,
) -> Path:
    """Write ``config.json`` + weights in timm's format, atomically (temp dir, then rename each file).

    ``input_size`` (channels, height, width) records the resolution the weights were trained at; a
    convnet's config would otherwise keep its architecture default (224, with a 288 test size).
    """
    import os
    import tempfile

    from timm.models import save_for_hf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    values = {"mean": mean, "std": std, "crop_pct": crop_pct, "input_size": input_size}
    data_config = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    model_config: dict[str, Any] = {"pretrained_cfg": {"tag": "deitctl", "license": "apache-2.0"}}
    if label_names:
        model_config["label_names"] = list(label_names)
    with tempfile.TemporaryDirectory(dir=out, prefix=".save.") as tmp:
        save_for_hf(model, tmp, model_config=model_config, safe_serialization=True, data_config=data_config)
        os.replace(Path(tmp) / WEIGHTS, out / weights_name)
        if weights_name == WEIGHTS:
            os.replace(Path(tmp) / CONFIG, out / CONFIG)
    return out
