"""One labelled split: which column is the image, which the label, and what the classes are called.

Class names come from the label column's ``ClassLabel``; string labels become classes sorted by name,
plain integer labels ``0..max`` — both computed over *all* splits so train and eval agree.

Images are decoded by us, lazily, in the DataLoader workers (``deitctl.data.samples``), not by
``datasets``, so that a corrupt or unreadable image fails the run with the file (or split and index)
named. We fail rather than skip: skipping would train on silently shrinking data, make epoch lengths
and resumed sample order depend on which files happen to be broken, and hide a damaged dataset copy.
Remove or replace the file and run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError
from deitctl.data.sources import OpenedDataset, open_dataset, quiet_datasets

if TYPE_CHECKING:
    from collections.abc import Sequence

    from datasets import Dataset, IterableDataset

_LABEL_GUESSES = ("label", "labels", "fine_label", "target", "class", "cls")  # cls: WebDataset


@dataclass
class LabeledSplit:
    """One split of a dataset with the columns and class names the rest of deitctl needs."""

    dataset: Dataset
    image_column: str
    label_column: str
    class_names: list[str]
    name: str
    split: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.dataset)


# -------------------------------------------------------------------------------------- labels
def infer_columns(ds: Dataset, image_column: str | None, label_column: str | None, where: str) -> tuple[str, str]:
    """The image and label column names: given, known, or found from the features; else name the flags."""
    from datasets import ClassLabel, Image

    cols = list(ds.features)
    image_column = image_column or next((c for c in cols if isinstance(ds.features[c], Image)), None)
    label_column = label_column or next((c for c in cols if isinstance(ds.features[c], ClassLabel)), None)
    label_column = label_column or next((c for c in _LABEL_GUESSES if c in cols), None)
    for kind, col in (("image", image_column), ("label", label_column)):
        if col is None or col not in cols:
            found = f"'{col}' not found" if col else "cannot infer it"
            raise UsageError(f"{where}: {kind} column: {found} (columns: {', '.join(cols)}); pass --{kind}-column NAME")
    if not isinstance(ds.features[image_column], Image):
        raise UsageError(f"{where}: column '{image_column}' does not hold images ({ds.features[image_column]}); "
                         "pass --image-column NAME")
    return image_column, label_column  # type: ignore[return-value]


def _class_names(splits: Sequence[Dataset], column: str, where: str) -> tuple[list[str], bool]:
    """(class names, whether the column must be cast to them): ClassLabel, strings or integers."""
    import pyarrow.compute as pc
    from datasets import ClassLabel, Value

    feature = splits[0].features[column]
    if isinstance(feature, ClassLabel):
        return list(feature.names), False
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        values: set[str] = set()
        for ds in splits:
            values.update(ds.unique(column))
        return sorted(values), True
    if isinstance(feature, Value) and "int" in feature.dtype:
        top = max((pc.max(ds.data.column(column)).as_py() for ds in splits if len(ds)), default=None)
        return [str(i) for i in range(int(top if top is not None else -1) + 1)], False
    raise UsageError(f"{where}: label column '{column}' holds {feature}, not class labels; pass --label-column NAME")


def load_split(
    ref: str, split: str = "train", image_column: str | None = None, label_column: str | None = None
) -> LabeledSplit:
    """Resolve any dataset reference (see module docstring) to a labelled split."""
    return label_split(open_dataset(ref), split, image_column, label_column)


def label_split(
    opened: OpenedDataset, split: str, image_column: str | None = None, label_column: str | None = None
) -> LabeledSplit:
    """``load_split`` for an already opened dataset (``data show`` looks at several splits)."""
    from datasets import ClassLabel, Image

    ref = opened.name
    ds = opened.pick(split)
    img_col, lbl_col = infer_columns(ds, image_column or opened.image_column, label_column or opened.label_column, ref)
    if len(ds) == 0:
        raise UsageError(f"dataset '{ref}' split '{split}' is empty; pick another --split or check the files")
    same_labels = [s for s in opened.splits.values() if lbl_col in s.features and len(s)]
    names, cast = _class_names([ds, *same_labels], lbl_col, ref)
    if cast:
        with quiet_datasets():
            ds = ds.cast_column(lbl_col, ClassLabel(names=names))
    # decode ourselves (in DataLoader workers) so a corrupt file is reported by name
    ds = ds.cast_column(img_col, Image(decode=False))
    return LabeledSplit(ds, img_col, lbl_col, names, ref, split)


@dataclass
class StreamSplit:
    """One split read as a stream (``--streaming``): image (undecoded) and label columns only, in shards."""

    dataset: IterableDataset
    image_column: str
    label_column: str
    class_names: list[str]
    name: str
    split: str
    num_examples: int | None  # from metadata; None when the source does not say

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_shards(self) -> int:
        return self.dataset.num_shards

    def require_size(self) -> int:
        """The sample count a trainer needs for its epochs and schedule; refused when the source does not say."""
        if self.num_examples is None:
            raise UsageError(f"{self.name}: the stream does not say how many samples its '{self.split}' split holds "
                             "(no split sizes in its dataset card); convert it once with `deitctl data convert`, "
                             "which records them")
        return self.num_examples


def load_stream(ref: str, split: str = "train", image_column: str | None = None, label_column: str | None = None,
                num_classes: int | None = None) -> StreamSplit:
    """A split as a stream: nothing copied, nothing read but metadata until iterated."""
    from datasets import ClassLabel, Image, Value

    opened = open_dataset(ref, streaming=True)
    ds = opened.pick(split)
    split = next(name for name, d in opened.splits.items() if d is ds)
    if ds.features is None:  # a WebDataset without a card: datasets reads one sample to learn the columns
        ds = ds._resolve_features()
    img_col, lbl_col = infer_columns(ds, image_column or opened.image_column, label_column or opened.label_column, ref)
    feature = ds.features[lbl_col]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    elif isinstance(feature, Value) and "int" in feature.dtype and num_classes:
        names = [str(i) for i in range(num_classes)]
    else:
        kind = "plain integers" if isinstance(feature, Value) and "int" in feature.dtype else str(feature)
        raise UsageError(f"{ref}: label column '{lbl_col}' holds {kind}, and a stream cannot list its classes without "
                         "reading it all; pass --set num_classes=K for integer labels, or convert the data once with "
                         "`deitctl data convert` (which records the class names)")
    keys = [c for c in ("__url__", "__key__") if c in ds.features]  # a WebDataset sample's shard and key
    ds = ds.select_columns([img_col, lbl_col, *keys]).cast_column(img_col, Image(decode=False))
    return StreamSplit(ds, img_col, lbl_col, names, ref, split, opened.counts.get(split))


def stream_head(ref: str, split: str, image_column: str | None = None, label_column: str | None = None,
                rows: int = 64) -> LabeledSplit:
    """The first ``rows`` samples of a streamed split, as a small map-style split (to look at, not to train on)."""
    import itertools

    from datasets import Dataset

    stream = load_stream(ref, split, image_column, label_column)
    head = Dataset.from_list(list(itertools.islice(stream.dataset, rows)), features=stream.dataset.features)
    return LabeledSplit(head, stream.image_column, stream.label_column, stream.class_names, ref, stream.split)


def check_inputs(ref: str, splits: tuple[str, str], image_column: str | None, label_column: str | None,
                 streaming: bool = False, num_classes: int | None = None) -> int:
    """Open a run's train and eval splits as it will (metadata only: no image decoded), so that a wrong path,
    column, label type, split or stream is refused in one line before anything is written; returns the number
    of training samples."""
    if not streaming:
        from deitctl.data.sources import preflight

        preflight(ref)  # a Hub dataset offline and not cached: at once
        train, _ = (load_split(ref, split, image_column, label_column) for split in splits)
        return len(train)
    train = load_stream(ref, splits[0], image_column, label_column, num_classes)
    load_stream(ref, splits[1], image_column, label_column, train.num_classes)
    return train.require_size()


def subset(split: LabeledSplit, max_samples: int | None, seed: int = 0) -> LabeledSplit:
    """A fixed, seeded subset (same samples for the same seed), for smoke runs and quick experiments."""
    if not max_samples or max_samples >= len(split):
        return split
    with quiet_datasets():
        ds = split.dataset.shuffle(seed=seed).select(range(max_samples)).flatten_indices()
    return LabeledSplit(ds, split.image_column, split.label_column, split.class_names, split.name, split.split)
