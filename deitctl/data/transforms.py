"""The DeiT augmentation pipeline, built by timm from the recipe.

Train (Table 9): RandomResizedCrop (bicubic) + flip + RandAugment + normalize + random erasing, and
Mixup/CutMix with label smoothing per batch. Eval: timm's own transform for the model's DataConfig
(resize to size/crop_pct, center crop). Images of 32 px or less follow the authors' small-image path:
RandomCrop(padding 4) for training, crop_pct 1.0 (fed as they are) at test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deitctl.models.types import DataConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deitctl.config.recipe import Recipe

SMALL = 32  # at or below this size: no crop-resize, RandomCrop(padding=4) for training


def train_transform(recipe: Recipe) -> Callable:
    """The recipe's per-image training augmentation (Mixup/CutMix act per batch: ``make_mixup``)."""
    from timm.data import create_transform

    size, mean, std = recipe.img_size, channel_stats(recipe.mean, recipe.in_chans), channel_stats(recipe.std, recipe.in_chans)
    if size <= SMALL:
        return pillow_safe(_small_train(recipe, mean, std))
    return pillow_safe(create_transform(
        input_size=(recipe.in_chans, size, size),
        is_training=True,
        auto_augment=recipe.rand_augment,
        interpolation=recipe.train_interpolation,
        color_jitter=None if recipe.rand_augment else 0.3,
        re_prob=recipe.reprob,
        re_mode=recipe.remode,
        re_count=recipe.recount,
        mean=mean,
        std=std,
    ))


def _posterize(img: Any, bits_to_keep: int, **_: Any) -> Any:
    """timm's posterize, keeping its meaning for 0 bits (a black image) that Pillow ≥ 12 rejects."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def pillow_safe(transform: Any) -> Any:
    """Swap our ``_posterize`` into timm's RandAugment/AutoAugment ops.

    timm draws Posterize with 0 bits to keep (level 10 of "PosterizeIncreasing", which the DeiT
    recipe's ``rand-m9-mstd0.5-inc1`` reaches about 2% of the time, and low levels of "Posterize");
    current Pillow raises ValueError there, which would crash a training run at a random step.
    """
    from timm.data import auto_augment

    for step in getattr(transform, "transforms", [transform]):
        groups = [getattr(step, "ops", None) or [], *(getattr(step, "policy", None) or [])]
        for op in (o for group in groups for o in (group if isinstance(group, list) else [group])):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize
    return transform


def _small_train(recipe: Recipe, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable:
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T

    size = recipe.img_size
    steps: list[Any] = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.RandomCrop(size, padding=4),
                        T.RandomHorizontalFlip()]
    if recipe.rand_augment:
        fill = tuple(round(255 * m) for m in mean)
        steps.append(rand_augment_transform(recipe.rand_augment, {"translate_const": int(size * 0.45),
                                                                   "img_mean": fill if len(fill) > 1 else fill[0]}))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if recipe.reprob:
        steps.append(RandomErasing(recipe.reprob, mode=recipe.remode, max_count=recipe.recount, device="cpu"))
    return T.Compose(steps)


def eval_transform(config: DataConfig) -> Callable:
    """timm's own eval transform for the config: resize the shorter side to size/crop_pct, center crop, normalize.

    deitctl builds it through ``timm.data.create_transform`` from the same DataConfig it writes beside the
    weights, so a user who loads the model with plain timm (``resolve_data_config`` + ``create_transform``)
    preprocesses exactly as ``deitctl eval`` measured.
    """
    from timm.data import create_transform

    return create_transform(input_size=config.input_size, is_training=False, interpolation=config.interpolation,
                            mean=channel_stats(config.mean, config.channels),
                            std=channel_stats(config.std, config.channels), crop_pct=config.crop_pct,
                            crop_mode="center")


def recipe_data_config(recipe: Recipe) -> DataConfig:
    """What a model trained with this recipe expects at test time (saved beside its weights).

    At ≤ 32 px the authors feed test images as they are (no resize, no crop), which is crop_pct 1.0:
    recording 0.875 there would make timm upscale 28 → 32 px and crop, another model than the one trained.
    """
    c, size = recipe.in_chans, recipe.img_size
    crop = 1.0 if size <= SMALL else recipe.eval_crop_pct
    return DataConfig((c, size, size), channel_stats(recipe.mean, c), channel_stats(recipe.std, c), crop, "bicubic")


def recipe_eval_transform(recipe: Recipe) -> Callable:
    """The eval transform with the recipe's size, statistics, channels and crop ratio."""
    return eval_transform(recipe_data_config(recipe))


def channel_stats(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Mean/std per channel; a 3-channel statistic on a 1-channel model is averaged, and vice versa."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    avg = sum(values) / len(values)
    return (avg,) * channels


def make_mixup(recipe: Recipe, num_classes: int):
    """timm's Mixup/CutMix with the recipe's label smoothing; None when both are off."""
    if not (recipe.mixup > 0 or recipe.cutmix > 0):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        prob=recipe.mixup_prob,
        switch_prob=recipe.mixup_switch_prob,
        mode="batch",
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )
