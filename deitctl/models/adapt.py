"""Fitting weights to a model of another resolution or class count: the paper's fine-tuning procedure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

HEAD_PREFIXES = ("head.", "head_dist.", "fc.", "classifier.")


def adapt_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Make a checkpoint fit ``model``: resize position embeddings, drop heads whose shape differs.

    Follows the paper's fine-tuning at a new resolution: the prefix tokens' embeddings (class, and
    distillation for ⚗ models) are kept, the grid part is resized bicubic (align_corners False).
    Returns the adapted state and the keys dropped (to be re-initialised).
    """
    from timm.layers import resample_abs_pos_embed

    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key not in target:
            continue
        want = target[key].shape
        if value.shape != want and key == "pos_embed":
            prefix = getattr(model, "num_prefix_tokens", 1)
            grid = tuple(model.patch_embed.grid_size)
            value = resample_abs_pos_embed(
                value, new_size=list(grid), num_prefix_tokens=prefix, interpolation="bicubic", antialias=False
            )
        if value.shape != want:
            dropped.append(key)
            continue
        out[key] = value
    return out, dropped


def load_adapted(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model`` after adapting it; return the keys left at their fresh init."""
    adapted, dropped = adapt_state_dict(state, model)
    missing = model.load_state_dict(adapted, strict=False).missing_keys
    unexpected_missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if unexpected_missing:
        raise UsageError(
            f"checkpoint does not fit model: missing {', '.join(unexpected_missing[:4])}"
            f"{' …' if len(unexpected_missing) > 4 else ''}; check the architecture (model/model_args)"
        )
    return sorted(set(missing) | set(dropped))
