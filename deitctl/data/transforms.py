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

SMALL = 32  # at or below this size: no crop-resize, RandomCrop(padding=crop_padding) for training


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

    size, rand_augment = recipe.img_size, None
    if recipe.rand_augment:
        fill = tuple(round(255 * m) for m in mean)
        rand_augment = rand_augment_transform(recipe.rand_augment, {"translate_const": int(size * 0.45),
                                                                     "img_mean": fill if len(fill) > 1 else fill[0]})
    erasing = RandomErasing(recipe.reprob, mode=recipe.remode, max_count=recipe.recount, device="cpu") \
        if recipe.reprob else None
    if recipe.fast_augment:
        return SmallTrain(size, mean, std, rand_augment, erasing, pad=recipe.crop_padding)
    from torchvision import transforms as T

    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.RandomCrop(size, padding=recipe.crop_padding),
                      T.RandomHorizontalFlip(), *([rand_augment] if rand_augment else []), T.ToTensor(),
                      T.Normalize(mean, std), *([erasing] if erasing else [])])


class SmallTrain:
    """The authors' small-image training augmentation — Resize, RandomCrop(padding: the recipe's
    crop_padding, 4 as the authors), horizontal flip, [RandAugment], ToTensor, Normalize, [RandomErasing] — computed on NumPy arrays.

    It draws the same random numbers in the same order as the torchvision ops (``torch.randint`` for the
    crop offsets, ``torch.rand`` for the flip) and computes the same arithmetic, so its output is
    bit-identical to ``torchvision.transforms.Compose`` of those ops; it only drops their per-op overhead,
    2.3× cheaper on a 28-px image (benchmarks/bench_small_aug.py: 199.5 → 87.9 µs, one thread); on 2 cores
    the data worker takes that CPU from the training step itself.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], rand_augment: Callable | None = None,
                 erasing: Callable | None = None, pad: int = 4) -> None:
        import torch

        self.size, self.rand_augment, self.erasing, self.pad = size, rand_augment, erasing, pad
        self.transforms = [step for step in (rand_augment, erasing) if step is not None]  # for pillow_safe
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        size, pad = self.size, self.pad
        if img.size != (size, size):
            from torchvision.transforms import InterpolationMode, Resize

            img = Resize(size, interpolation=InterpolationMode.BICUBIC)(img)
        a = np.asarray(img)
        padded = np.zeros((a.shape[0] + 2 * pad, a.shape[1] + 2 * pad, *a.shape[2:]), dtype=a.dtype)
        padded[pad:pad + a.shape[0], pad:pad + a.shape[1]] = a
        i = j = 0
        if padded.shape[:2] != (size, size):  # torchvision draws no offsets for a crop of the whole image
            i = int(torch.randint(0, padded.shape[0] - size + 1, size=(1,)).item())
            j = int(torch.randint(0, padded.shape[1] - size + 1, size=(1,)).item())
        a = padded[i:i + size, j:j + size]
        if torch.rand(1) < 0.5:
            a = a[:, ::-1]
        if self.rand_augment is not None:
            a = np.asarray(self.rand_augment(Image.fromarray(np.ascontiguousarray(a), img.mode)))
        x = torch.from_numpy(np.array(a, copy=True)).view(size, size, -1).permute(2, 0, 1).contiguous()
        x = x.to(torch.float32).div(255).sub_(self.mean).div_(self.std)
        return self.erasing(x) if self.erasing is not None else x

    def __repr__(self) -> str:
        return (f"SmallTrain(size={self.size}, RandomCrop(padding={self.pad}), flip, rand_augment="
                f"{self.rand_augment is not None}, erasing={self.erasing is not None})")


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


def unnormalised(images: Any, mean: Sequence[float], std: Sequence[float], channels: int) -> Any:
    """Normalised images (N×C×H×W) back in [0, 1], channels last (a NumPy array): what a person is shown."""
    import torch

    m = torch.tensor(channel_stats(mean, channels)).view(1, -1, 1, 1)
    s = torch.tensor(channel_stats(std, channels)).view(1, -1, 1, 1)
    return (images.float().cpu() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def make_mixup(recipe: Recipe, num_classes: int) -> SeededMixup | None:
    """timm's Mixup/CutMix with the recipe's label smoothing, its batch draw seeded per batch; None when both are off."""
    if not (recipe.mixup > 0 or recipe.cutmix > 0):
        return None
    from timm.data import Mixup

    return SeededMixup(Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        prob=recipe.mixup_prob,
        switch_prob=recipe.mixup_switch_prob,
        mode="batch",
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    ), recipe.seed)


class SeededMixup:
    """timm's batch-mode Mixup/CutMix whose draw (mix or not, Mixup or CutMix, λ, the box) is a pure function of
    the batch's place: (seed, epoch, micro-step in the epoch, rank).

    timm draws these from NumPy's global generator, so a batch's mixing used to depend on every draw made before
    it in the process. Seeded by the place, the augmented batch is determined by what also determines its images
    (each sample's augmentation is seeded by (seed, epoch, index, copy)), which lets a teacher-output store key
    it by that place (``deitctl.training.teacher_store``), and a resumed run mixes as the uninterrupted one without
    restoring any state. The global generator is restored after the draw: nothing else in the process sees it.
    Called without a place (``deitctl data show``), it draws from the global generator as timm does.
    """

    TAG = 0x6D69786D  # "mixm": keeps these seeds apart from other (seed, epoch, …) seed sequences

    def __init__(self, mixup: Any, seed: int) -> None:
        self.mixup, self.seed = mixup, seed

    def __call__(self, x: Any, target: Any, place: tuple[int, int, int] | None = None) -> tuple[Any, Any]:
        """Mix ``x`` and its ``target``; ``place`` = (epoch, micro-step in the epoch, rank)."""
        if place is None:
            return self.mixup(x, target)
        import numpy as np

        state = np.random.get_state()
        np.random.seed(np.random.SeedSequence([self.seed, *place, self.TAG]).generate_state(4))
        try:
            return self.mixup(x, target)
        finally:
            np.random.set_state(state)
