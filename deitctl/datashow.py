"""``deitctl data show``: a dataset as deitctl sees it, and a grid of what the model sees.

The summary answers "did deitctl find my data the way I meant it": split sizes, the columns it took
for image and label, the class names. The grid runs real training samples through the recipe's
train augmentation (and its Mixup/CutMix, if any), because a wrong crop size, grayscale conversion
or over-strong augmentation is much easier to spot in a picture than in a loss curve.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deitctl.data import LabeledSplit
    from deitctl.recipes import Recipe

MAX_NAMES_SHOWN = 20


def describe(
    ref: str, split: str | None = None, image_column: str | None = None, label_column: str | None = None
) -> tuple[dict[str, Any], LabeledSplit]:
    """The summary dict (the ``--json`` output) and the labelled split it describes.

    Without ``--split`` every split is sized (the lengths are metadata: cheap), and the classes are
    read from ``train`` (or the first split).
    """
    from deitctl.data import label_split, open_dataset
    from deitctl.samples import decode_image

    opened = open_dataset(ref)
    shown = split or ("train" if "train" in opened.splits else next(iter(opened.splits)))
    labeled = label_split(opened, shown, image_column, label_column)
    sizes = {split: len(labeled)} if split else {name: len(ds) for name, ds in opened.splits.items()}
    features = opened.pick(shown).features
    first = decode_image(labeled.dataset[0][labeled.image_column], None, 0, ref)
    summary = {
        "dataset": ref,
        "splits": sizes,
        "split": shown,
        "num_classes": labeled.num_classes,
        "class_names": labeled.class_names,
        "image_column": labeled.image_column,
        "label_column": labeled.label_column,
        "columns": list(features),
        "features": {name: _feature_name(f) for name, f in features.items()},
        "first_image": {"width": first.width, "height": first.height, "mode": first.mode},
    }
    return summary, labeled


def _feature_name(feature: Any) -> str:
    from datasets import ClassLabel, Value

    if isinstance(feature, ClassLabel):
        return f"ClassLabel({feature.num_classes})"
    if isinstance(feature, Value):
        return feature.dtype
    return type(feature).__name__


def write_grid(labeled: LabeledSplit, recipe: Recipe, out: Path, count: int = 16, seed: int = 0) -> Path:
    """A PNG grid of ``count`` training samples after the recipe's augmentation, denormalized.

    Titles are the label names; after Mixup/CutMix, the two classes with the largest target weight.
    Written atomically (a crash never leaves a half-written PNG under the final name).
    """
    import random

    import numpy as np
    import torch

    from deitctl.data import subset
    from deitctl.samples import collate, with_transform
    from deitctl.transforms import _stats, make_mixup, train_transform

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    sample = subset(labeled, count, seed)
    dataset = with_transform(sample, train_transform(recipe), recipe.in_chans)
    images, labels = collate(dataset.__getitems__(range(len(dataset))))
    mixup = make_mixup(recipe, labeled.num_classes)
    targets = None
    if mixup is not None and len(images) % 2 == 0:
        images, targets = mixup(images, labels)
    mean = torch.tensor(_stats(recipe.mean, recipe.in_chans)).view(-1, 1, 1)
    std = torch.tensor(_stats(recipe.std, recipe.in_chans)).view(-1, 1, 1)
    pixels = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    titles = [_title(labeled.class_names, int(y), None if targets is None else targets[i])
              for i, y in enumerate(labels)]
    return _save_grid(pixels, titles, out, f"{labeled.name} [{labeled.split}] through recipe {recipe.name}")


def _title(names: list[str], label: int, target: Any) -> str:
    if target is None:
        return names[label]
    weights, classes = target.topk(min(2, len(names)))
    return "\n".join(f"{names[int(c)]} {float(w):.2f}" for w, c in zip(weights, classes, strict=True) if w > 0.05)


def _save_grid(pixels: Any, titles: list[str], out: Path, suptitle: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deitctl.atomic import atomic_path

    cols = math.ceil(math.sqrt(len(pixels)))
    rows = math.ceil(len(pixels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, pixels, titles, strict=False):
        gray = img.shape[-1] == 1
        ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def show(
    ref: str, split: str | None = None, image_column: str | None = None, label_column: str | None = None,
    grid: Path | None = None, recipe: str = "fashion-deit-ti", as_json: bool = False,
) -> dict[str, Any]:
    """The whole command: describe, optionally write the grid, print (table or JSON)."""
    from deitctl.console import emit_json, log
    from deitctl.recipes import load_recipe

    summary, labeled = describe(ref, split, image_column, label_column)
    if grid is not None:
        if split is None and labeled.split != "train":
            log(f"no 'train' split; the grid shows '{labeled.split}'")
        summary["grid"] = str(write_grid(labeled, load_recipe(recipe), grid))
        log(f"wrote {grid}")
    emit_json(summary) if as_json else _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    from deitctl.console import console, print_table

    rows = [{"split": name, "images": size} for name, size in summary["splits"].items()]
    print_table(rows, title=summary["dataset"])
    names = summary["class_names"]
    more = f", … ({len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else ""
    console.print(f"classes ({summary['num_classes']}): {', '.join(names[:MAX_NAMES_SHOWN])}{more}")
    console.print(f"image column: {summary['image_column']}   label column: {summary['label_column']}")
    console.print("columns: " + ", ".join(f"{k} ({v})" for k, v in summary["features"].items()))
    size = summary["first_image"]
    console.print(f"first image: {size['width']}×{size['height']} {size['mode']}")
