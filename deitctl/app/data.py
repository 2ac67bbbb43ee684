"""``deitctl data show``: a dataset as deitctl sees it, and a grid of what the model sees.

The summary answers "did deitctl find my data the way I meant it": split sizes, the columns it took
for image and label, the class names. The grid runs real training samples through the recipe's
train augmentation (and its Mixup/CutMix, if any), because a wrong crop size, grayscale conversion
or over-strong augmentation is much easier to spot in a picture than in a loss curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deitctl.config.loader import Recipe
    from deitctl.data.splits import LabeledSplit

MAX_NAMES_SHOWN = 20


def describe(
    ref: str, split: str | None = None, image_column: str | None = None, label_column: str | None = None
) -> tuple[dict[str, Any], LabeledSplit]:
    """The summary dict (the ``--json`` output) and the labelled split it describes.

    Without ``--split`` every split is sized (the lengths are metadata: cheap), and the classes are
    read from ``train`` (or the first split). A folder of shards is read as a stream (sizes from its metadata,
    the grid from its first rows): looking at 140 GB of shards copies nothing.
    """
    from pathlib import Path

    from deitctl.data.samples import decode_image
    from deitctl.data.shards import is_shard_folder
    from deitctl.data.sources import open_dataset
    from deitctl.data.splits import label_split, stream_head

    streamed = is_shard_folder(Path(ref).expanduser())
    opened = open_dataset(ref, streaming=streamed)
    shown = split or ("train" if "train" in opened.splits else next(iter(opened.splits)))
    labeled = stream_head(ref, shown, image_column, label_column) if streamed \
        else label_split(opened, shown, image_column, label_column)
    sizes = opened.counts if streamed else {name: len(ds) for name, ds in opened.splits.items()}
    sizes = {shown: sizes[shown]} if split else sizes
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
    from deitctl.data.samples import collate, with_transform
    from deitctl.data.splits import subset
    from deitctl.data.transforms import make_mixup, train_transform, unnormalised
    from deitctl.records.plots import save_grid
    from deitctl.runtime.rng import seed_all

    seed_all(seed)
    sample = subset(labeled, count, seed)
    dataset = with_transform(sample, train_transform(recipe), recipe.in_chans)
    images, labels = collate(dataset.__getitems__(range(len(dataset))))
    mixup = make_mixup(recipe, labeled.num_classes)
    targets = None
    if mixup is not None and len(images) % 2 == 0:
        images, targets = mixup(images, labels)
    pixels = unnormalised(images, recipe.mean, recipe.std, recipe.in_chans)
    titles = [_title(labeled.class_names, int(y), None if targets is None else targets[i])
              for i, y in enumerate(labels)]
    return save_grid(pixels, titles, out, f"{labeled.name} [{labeled.split}] through recipe {recipe.name}")


def _title(names: list[str], label: int, target: Any) -> str:
    if target is None:
        return names[label]
    weights, classes = target.topk(min(2, len(names)))
    return "\n".join(f"{names[int(c)]} {float(w):.2f}" for w, c in zip(weights, classes, strict=True) if w > 0.05)


@dataclass
class ShowRequest:
    dataset: str
    split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    grid: Path | None = None  # write a PNG grid of augmented training samples here
    recipe: str = "fashion-deit-ti"  # whose augmentation the grid shows


def show(req: ShowRequest) -> dict[str, Any]:
    """``deitctl data show``: the summary (the ``--json`` output), after writing the grid if asked."""
    from deitctl.config.loader import load_recipe
    from deitctl.core.console import log

    summary, labeled = describe(req.dataset, req.split, req.image_column, req.label_column)
    if req.grid is not None:
        if req.split is None and labeled.split != "train":
            log(f"no 'train' split; the grid shows '{labeled.split}'")
        summary["grid"] = str(write_grid(labeled, load_recipe(req.recipe), req.grid))
        log(f"wrote {req.grid}")
    return summary
