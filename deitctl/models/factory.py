"""The one model constructor: timm builds every architecture; a recipe only names it and its arguments.

``build`` is the single entry point (like ``timm.create_model``, which it calls): recipes, model
directories, legacy ``.pth`` files and timm names all come through it, so a check or an argument
rule is written once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from torch import nn

    from deitctl.config.recipe import Recipe

# timm modules whose models take ``img_size`` (the ViT family); convnets do not.
_SIZED_MODULES = ("timm.models.deit", "timm.models.vision_transformer")


def takes_img_size(arch: str) -> bool:
    import timm.models

    return timm.models.model_entrypoint(arch).__module__ in _SIZED_MODULES


def check_arch(arch: str) -> str:
    """Strip a weights tag (``regnety_160.deit_in1k``) and check timm knows the architecture."""
    import timm

    from deitctl.config.loader import public_recipes

    base = arch.split(".")[0]
    if not timm.is_model(base):
        hint = did_you_mean(base, [*public_recipes(), *timm.list_models()])
        raise UsageError(f"unknown model or recipe '{arch}'{hint}; see `deitctl recipes list` and timm.list_models()")
    return base


def build(arch: str, img_size: int | None = None, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with random weights, or with a tag's published weights when ``pretrained``.

    ``img_size`` is passed only to the architectures that take it (convnets take any size).
    """
    import timm

    base = check_arch(arch)
    if img_size and takes_img_size(base):
        kwargs["img_size"] = img_size
    try:
        return timm.create_model(arch if pretrained else base, pretrained=pretrained, **kwargs)
    except TypeError as e:
        raise UsageError(f"model '{base}' rejects the arguments {kwargs}: {e}") from None


def model_kwargs(recipe: Recipe, num_classes: int | None = None) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments a recipe asks for (besides ``img_size``)."""
    kwargs: dict[str, Any] = dict(recipe.model_args)
    kwargs["in_chans"] = recipe.in_chans
    kwargs["num_classes"] = num_classes or recipe.num_classes or 1000
    if recipe.drop:
        kwargs["drop_rate"] = recipe.drop
    if recipe.drop_path:
        kwargs["drop_path_rate"] = recipe.drop_path
    return kwargs


def create_model(recipe: Recipe, num_classes: int | None = None, img_size: int | None = None) -> nn.Module:
    """The recipe's model with random weights (weights come from checkpoints, never the network)."""
    return build(recipe.model, img_size or recipe.img_size, **model_kwargs(recipe, num_classes))
