"""Legacy ``.pth`` state dicts (the authors' checkpoints, torchvision-style files): weights only, never code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError
from deitctl.models.types import LoadedModel

if TYPE_CHECKING:
    import torch

PTH_SUFFIXES = (".pth", ".pt", ".bin")
_ARCH_PREFIX = re.compile(r"^[\w.]+:")


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
    """``[ARCH:]path.pth``: the architecture named, or inferred from the tensors of a DeiT."""
    from deitctl.models.adapt import load_adapted
    from deitctl.models.factory import build
    from deitctl.models.inspect import data_config

    arch, _, file = ref.rpartition(":") if _ARCH_PREFIX.match(ref) else ("", "", ref)
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
    model = build(arch, img_size=size, **args, **overrides)
    load_adapted(model, state)
    model.eval()
    return LoadedModel(model, arch.split(".")[0], str(path), None, data_config(model), args, None)
