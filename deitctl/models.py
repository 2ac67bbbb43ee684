"""Model factory: a recipe becomes a timm model; counting parameters and GMACs; adapting weights.

timm owns the architectures. We only translate recipe keys into ``timm.create_model`` arguments,
and adapt a state dict to a new resolution or class count (the paper's fine-tuning procedure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deitctl.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.recipes import Recipe

# timm modules whose models take ``img_size`` (the ViT family); convnets do not.
_SIZED_MODULES = ("timm.models.deit", "timm.models.vision_transformer")


def takes_img_size(arch: str) -> bool:
    import timm.models

    return timm.models.model_entrypoint(arch).__module__ in _SIZED_MODULES


def check_arch(arch: str) -> str:
    """Strip a weights tag (``regnety_160.deit_in1k``) and check timm knows the architecture."""
    import timm

    from deitctl.recipes import public_recipes

    base = arch.split(".")[0]
    if not timm.is_model(base):
        hint = did_you_mean(base, [*public_recipes(), *timm.list_models()])
        raise UsageError(f"unknown model or recipe '{arch}'{hint}; see `deitctl recipes list` and timm.list_models()")
    return base


def model_kwargs(recipe: Recipe, num_classes: int | None = None, img_size: int | None = None) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments a recipe asks for."""
    kwargs: dict[str, Any] = dict(recipe.model_args)
    kwargs["in_chans"] = recipe.in_chans
    kwargs["num_classes"] = num_classes or recipe.num_classes or 1000
    if recipe.drop:
        kwargs["drop_rate"] = recipe.drop
    if recipe.drop_path:
        kwargs["drop_path_rate"] = recipe.drop_path
    if takes_img_size(check_arch(recipe.model)):
        kwargs["img_size"] = img_size or recipe.img_size
    return kwargs


def create_model(recipe: Recipe, num_classes: int | None = None, img_size: int | None = None) -> nn.Module:
    """Build the recipe's model with random weights (weights come from checkpoints, never the network)."""
    import timm

    arch = check_arch(recipe.model)
    kwargs = model_kwargs(recipe, num_classes, img_size)
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as e:
        raise UsageError(f"model '{arch}' rejects the recipe's model_args {recipe.model_args}: {e}") from None


def create_by_name(arch: str, img_size: int | None = None, **kwargs: Any) -> nn.Module:
    import timm

    base = check_arch(arch)
    if img_size and takes_img_size(base):
        kwargs["img_size"] = img_size
    return timm.create_model(base, pretrained=False, **kwargs)


def is_distilled(model: nn.Module) -> bool:
    """True for models with a distillation token and ``head_dist`` (timm's VisionTransformerDistilled)."""
    return hasattr(model, "head_dist") and hasattr(model, "dist_token")


def input_config(model: nn.Module) -> dict[str, Any]:
    """timm's preprocessing config for the model *as built*: ``resolve_input_data_config`` follows a custom
    ``img_size``/``in_chans`` (``resolve_model_data_config`` would answer the pretrained 3×224×224)."""
    import logging

    from timm.data import resolve_input_data_config

    logging.getLogger("timm").setLevel(logging.ERROR)  # "pretrained mean does not match 1 channels"
    return resolve_input_data_config(model)


def input_size(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) the model expects now, following any resize since it was built."""
    return tuple(input_config(model)["input_size"])  # type: ignore[return-value]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: nn.Module, img_size: int | None = None, in_chans: int | None = None) -> float:
    """Multiply-accumulates per image ÷ 1e9 (the unit of the paper's "FLOPs" column).

    ``torch.utils.flop_counter`` counts 2 FLOPs per multiply-accumulate, so we halve its total.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    c, h, w = input_size(model)
    device = next(model.parameters()).device  # meta tensors count as well and cost nothing
    x = torch.zeros(1, in_chans or c, img_size or h, img_size or w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


# -------------------------------------------------------------------------------- adapting weights
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
    head_like = ("head.", "head_dist.", "fc.", "classifier.")
    unexpected_missing = [k for k in missing if not k.startswith(head_like)]
    if unexpected_missing:
        raise UsageError(
            f"checkpoint does not fit model: missing {', '.join(unexpected_missing[:4])}"
            f"{' …' if len(unexpected_missing) > 4 else ''}; check the architecture (model/model_args)"
        )
    return sorted(set(missing) | set(dropped))


def model_info(ref: str, img_size: int | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Parameters and GMACs of a recipe's model, a timm name or any model reference."""
    import torch

    from deitctl.recipes import is_recipe, load_recipe

    if is_recipe(ref):
        recipe = load_recipe(ref, overrides)
        img_size = img_size or recipe.img_size
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = create_model(recipe, img_size=img_size)
    else:
        from deitctl.modelref import load_model

        if overrides:
            raise UsageError("--set applies to recipes only; pass a recipe name to override its keys")
        model = load_model(ref, img_size=img_size).model
    c, h, _ = input_size(model)
    size = img_size or h
    return {
        "model": ref,
        "arch": type(model).__name__,
        "params": count_params(model),
        "params_m": round(count_params(model) / 1e6, 2),
        "gmacs": round(count_gmacs(model, size, c), 3),
        "img_size": size,
        "in_chans": c,
        "distilled": is_distilled(model),
    }
