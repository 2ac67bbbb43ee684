"""All data enters through Hugging Face ``datasets``: named datasets, Hub ids and local files.

``load_split`` answers one question — "give me this split as a Dataset, and tell me which column is
the image, which the label, and what the classes are called" — whatever the source:

  * a named dataset (``fashion-mnist``, ``cifar10``, ``cifar100`` (fine labels) / ``cifar100-coarse``,
    ``flowers102``, ``stanford-cars``, ``imagenet-1k``; ``inat18``/``inat19`` from local folders),
  * a Hub id ``org/name`` (with ``--image-column/--label-column`` where they cannot be inferred);
    offline, only what is already in the ``datasets`` cache — otherwise one line saying so and how
    to provide a local copy,
  * a local path: an image-folder tree (``[split/]class/xxx.jpg``), parquet/arrow files (split from
    the file or folder name), or a ``save_to_disk`` directory.

Class names come from the label column's ``ClassLabel``; string labels become classes sorted by name,
plain integer labels ``0..max`` — both computed over *all* splits so train and eval agree.

Images are decoded by us, lazily, in the DataLoader workers (``with_transform``), not by ``datasets``,
so that a corrupt or unreadable image fails the run with the file (or split and index) named. We fail
rather than skip: skipping would train on silently shrinking data, make epoch lengths and resumed
sample order depend on which files happen to be broken, and hide a damaged dataset copy. Remove or
replace the file and run again.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.errors import DeitctlError, UsageError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from datasets import Dataset


@dataclass(frozen=True)
class Source:
    hub_id: str | None
    image_column: str
    label_column: str
    local_env: str | None = None  # environment variable naming a local copy (iNaturalist)


NAMED: dict[str, Source] = {
    "fashion-mnist": Source("zalando-datasets/fashion_mnist", "image", "label"),
    "cifar10": Source("uoft-cs/cifar10", "img", "label"),
    "cifar100": Source("uoft-cs/cifar100", "img", "fine_label"),
    "cifar100-coarse": Source("uoft-cs/cifar100", "img", "coarse_label"),
    "flowers102": Source("nelorth/oxford-flowers", "image", "label"),
    "stanford-cars": Source("tanganke/stanford_cars", "image", "label"),
    "imagenet-1k": Source("ILSVRC/imagenet-1k", "image", "label"),
    "inat18": Source(None, "image", "label", "DEITCTL_INAT18"),
    "inat19": Source(None, "image", "label", "DEITCTL_INAT19"),
}
_LABEL_GUESSES = ("label", "labels", "fine_label", "target", "class")
_SPLIT_NAMES = {"train": "train", "test": "test", "validation": "validation", "val": "validation",
                "valid": "validation"}
_SPLIT_ALIASES = {"validation": ("val", "valid", "test"), "test": ("validation", "val"), "val": ("validation",)}
LOCAL_HINT = "an image folder, parquet/arrow files or a save_to_disk directory"


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


@dataclass
class OpenedDataset:
    """Every split of a dataset reference, plus the columns a named dataset is known to use."""

    splits: dict[str, Dataset]
    image_column: str | None
    label_column: str | None
    name: str

    def pick(self, split: str) -> Dataset:
        """The split by name or a common alias (validation ↔ val ↔ test); lists the others if missing."""
        for candidate in (split, *_SPLIT_ALIASES.get(split, ())):
            if candidate in self.splits:
                return self.splits[candidate]
        raise UsageError(f"{self.name}: no split '{split}' (available: {', '.join(self.splits)}); pass --split")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars for small internal steps (the CLI shows its own status)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# ------------------------------------------------------------------------------------- sources
def _is_local(ref: str) -> bool:
    first = Path(ref).expanduser().parts[0] if ref else ""
    return os.path.exists(ref) or ref.startswith((".", "/", "~")) or ("/" in ref and os.path.isdir(first))


def _split_of(path: Path) -> str | None:
    """A split name from a data file's stem (``train-0000.parquet``) or its folder (``test/x.arrow``)."""
    for token in (path.stem.split("-")[0].split("_")[0].split(".")[0].lower(), path.parent.name.lower()):
        if token in _SPLIT_NAMES:
            return _SPLIT_NAMES[token]
    return None


def _as_splits(loaded: Any) -> dict[str, Dataset]:
    from datasets import DatasetDict

    return dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}


def _load_local(path: Path) -> dict[str, Dataset]:
    import datasets

    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        try:
            return _as_splits(datasets.load_from_disk(str(path)))
        except IndexError:  # datasets 5.2 cannot reload a split saved with no rows
            raise _empty_split_error(path, _empty_saved_splits(path)) from None
    if path.is_file() and path.suffix not in (".parquet", ".arrow"):
        raise UsageError(f"{path}: not a dataset file; pass {LOCAL_HINT}")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".arrow"))
    if files:
        kind = "parquet" if files[0].suffix == ".parquet" else "arrow"
        data_files: dict[str, list[str]] = {}
        for f in files:
            data_files.setdefault(_split_of(f) or "train", []).append(str(f))
        try:
            return _as_splits(datasets.load_dataset(kind, data_files=data_files))
        except ValueError as e:  # 'Instruction "test" corresponds to no data!'
            if "corresponds to no data" not in str(e):
                raise
            raise _empty_split_error(path, str(e).split('"')[1:2]) from None
    try:
        return _as_splits(datasets.load_dataset("imagefolder", data_dir=str(path)))
    except FileNotFoundError:  # datasets' EmptyDatasetError / DataFilesNotFoundError
        raise UsageError(f"{path}: no images, parquet or arrow files found; pass {LOCAL_HINT}") from None


def _empty_saved_splits(path: Path) -> list[str]:
    import json

    states = [path / "state.json"] if (path / "state.json").exists() else sorted(path.glob("*/state.json"))
    return [p.parent.name for p in states if not json.loads(p.read_text()).get("_data_files")]


def _empty_split_error(path: Path, splits: list[str]) -> UsageError:
    """datasets 5.2 refuses to load a dataset with an empty split at all; say which one it is."""
    which = f"split {', '.join(repr(s) for s in splits)}" if splits else "a split"
    return UsageError(f"{path}: {which} is empty (no rows); remove it or add data, then run again")


def _load_hub(hub_id: str, name: str) -> dict[str, Dataset]:
    """All splits of a Hub dataset; offline that means the local ``datasets`` cache only.

    datasets 5.2 raises ``ConnectionError`` both with ``HF_DATASETS_OFFLINE=1`` ("Couldn't reach … on
    the Hub (OfflineModeIsEnabled)") and when the Hub is unreachable (after retries,
    ``LocalEntryNotFoundError``), and ``DatasetNotFoundError`` when the Hub answers that no such
    (or no accessible) dataset exists.
    """
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return _as_splits(datasets.load_dataset(hub_id))
    except ConnectionError:
        raise DeitctlError(
            f"dataset '{name}' ({hub_id}) is not in the local datasets cache and the Hub cannot be reached; "
            f"download it once where the Hub is reachable (datasets.load_dataset('{hub_id}'), same HF_HOME), "
            f"or use a local copy instead: {LOCAL_HINT}"
        ) from None
    except DatasetNotFoundError:
        raise UsageError(f"dataset '{name}' not found on the Hub ({hub_id}); check the id, or for a gated "
                         "dataset accept its terms and log in (`hf auth login`)") from None


def open_dataset(ref: str) -> OpenedDataset:
    """Every split of a dataset reference (see the module docstring), without decoding any image."""
    if ref == "fashion-mnist" and not os.environ.get("DEITCTL_FASHION_MNIST_HUB"):
        from deitctl import fashion_mnist

        if fashion_mnist.idx_available():
            return OpenedDataset(_as_splits(fashion_mnist.load_local()), "image", "label", ref)
    if ref in NAMED:
        src = NAMED[ref]
        local = os.environ.get(src.local_env) if src.local_env else None
        if local:
            return OpenedDataset(_load_local(Path(local).expanduser()), None, None, ref)
        if src.hub_id is None:
            raise UsageError(f"dataset '{ref}' has no Hub copy: set {src.local_env}=PATH or pass a local path "
                             "(an image folder with train/ and val/ sub-folders)")
        return OpenedDataset(_load_hub(src.hub_id, ref), src.image_column, src.label_column, ref)
    if _is_local(ref):
        return OpenedDataset(_load_local(Path(ref).expanduser()), None, None, ref)
    if ref.count("/") == 1:
        return OpenedDataset(_load_hub(ref, ref), None, None, ref)
    raise UsageError(f"unknown dataset '{ref}'{did_you_mean(ref, NAMED)}; use a name ({', '.join(NAMED)}), "
                     "a Hub id org/name, or a local path")


def load_dataset_split(ref: str, split: str) -> tuple[Dataset, str | None, str | None]:
    """The raw Dataset of a split, plus the image/label columns a named dataset is known to use."""
    opened = open_dataset(ref)
    return opened.pick(split), opened.image_column, opened.label_column


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


def subset(split: LabeledSplit, max_samples: int | None, seed: int = 0) -> LabeledSplit:
    """A fixed, seeded subset (same samples for the same seed), for smoke runs and quick experiments."""
    if not max_samples or max_samples >= len(split):
        return split
    with quiet_datasets():
        ds = split.dataset.shuffle(seed=seed).select(range(max_samples)).flatten_indices()
    return LabeledSplit(ds, split.image_column, split.label_column, split.class_names, split.name, split.split)
