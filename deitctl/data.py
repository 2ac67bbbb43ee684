"""All data enters through Hugging Face ``datasets``: named datasets, Hub ids and local files.

``load_split`` answers one question — "give me this split as a Dataset, and tell me which column is
the image, which the label, and what the classes are called" — whatever the source:

  * a named dataset (``fashion-mnist``, ``cifar10``, ``cifar100`` / ``cifar100-coarse``, ``flowers102``,
    ``stanford-cars``, ``imagenet-1k``; ``inat18``/``inat19`` from local folders),
  * a Hub id ``org/name`` (with ``--image-column/--label-column`` where they cannot be inferred),
  * a local path: an image-folder tree (``class/xxx.jpg``), parquet/arrow files, or a ``save_to_disk`` dir.

Unreadable images fail the run with the file named (we never train on silently shrinking data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.errors import DeitctlError, UsageError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable

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


def _is_local(ref: str) -> bool:
    return os.path.exists(ref) or ref.startswith((".", "/", "~"))


def _load_local(path: Path, split: str) -> Dataset:
    import datasets

    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        return _pick_split(loaded, split, str(path))
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".arrow"))
    if files:
        kind = "parquet" if files[0].suffix == ".parquet" else "arrow"
        by_split = {s: [str(f) for f in files if s in f.stem or f.parent.name == s] for s in ("train", "test", "validation")}
        data_files = {s: fs for s, fs in by_split.items() if fs} or {"train": [str(f) for f in files]}
        return _pick_split(datasets.load_dataset(kind, data_files=data_files), split, str(path))
    return _pick_split(datasets.load_dataset("imagefolder", data_dir=str(path)), split, str(path))


def _pick_split(loaded: Any, split: str, where: str) -> Dataset:
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded
    if split in loaded:
        return loaded[split]
    aliases = {"validation": ("val", "valid", "test"), "test": ("validation", "val"), "val": ("validation",)}
    for alt in aliases.get(split, ()):
        if alt in loaded:
            return loaded[alt]
    raise UsageError(f"{where}: no split '{split}' (available: {', '.join(loaded)}); pass --split")


def _load_hub(hub_id: str, split: str, name: str) -> Dataset:
    import datasets

    try:
        return datasets.load_dataset(hub_id, split=split)
    except ValueError as e:
        if "split" in str(e).lower() or "Unknown split" in str(e):
            raise UsageError(f"dataset '{name}' has no split '{split}'; pass --split ({e})") from None
        raise
    except (ConnectionError, OSError, FileNotFoundError) as e:
        raise DeitctlError(
            f"dataset '{name}' ({hub_id}) is not cached and the Hub is unreachable ({type(e).__name__}); "
            "download it where the Hub is reachable, or pass a local copy: --dataset PATH "
            "(image folder, parquet files or a save_to_disk directory)"
        ) from None


def load_dataset_split(ref: str, split: str) -> tuple[Dataset, str | None, str | None]:
    """The raw Dataset of a split, plus the image/label columns a named dataset is known to use."""
    if ref == "fashion-mnist" and not os.environ.get("DEITCTL_FASHION_MNIST_HUB"):
        from deitctl import fashion_mnist

        if fashion_mnist.idx_available():
            return _pick_split(fashion_mnist.load_local(), split, "fashion-mnist"), "image", "label"
    if ref in NAMED:
        src = NAMED[ref]
        local = os.environ.get(src.local_env) if src.local_env else None
        if local:
            return _load_local(Path(local).expanduser(), split), None, None
        if src.hub_id is None:
            raise UsageError(f"dataset '{ref}' has no Hub copy: set {src.local_env}=PATH or pass --dataset PATH "
                             "(an image folder with train/ and val/ sub-folders)")
        return _load_hub(src.hub_id, split, ref), src.image_column, src.label_column
    if _is_local(ref):
        return _load_local(Path(ref).expanduser(), split), None, None
    if "/" in ref:
        return _load_hub(ref, split, ref), None, None
    raise UsageError(f"unknown dataset '{ref}'{did_you_mean(ref, NAMED)}; use a name ({', '.join(NAMED)}), "
                     "a Hub id org/name, or a local path")


def _infer_columns(ds: Dataset, image_column: str | None, label_column: str | None, where: str) -> tuple[str, str]:
    from datasets import ClassLabel, Image

    cols = list(ds.features)
    image_column = image_column or next((c for c in cols if isinstance(ds.features[c], Image)), None)
    label_column = label_column or next((c for c in cols if isinstance(ds.features[c], ClassLabel)), None)
    label_column = label_column or next((c for c in _LABEL_GUESSES if c in cols), None)
    for kind, col in (("image", image_column), ("label", label_column)):
        if col is None or col not in cols:
            found = f"'{col}' not found" if col else "cannot infer it"
            raise UsageError(f"{where}: {kind} column: {found} (columns: {', '.join(cols)}); pass --{kind}-column NAME")
    return image_column, label_column  # type: ignore[return-value]


def load_split(
    ref: str, split: str = "train", image_column: str | None = None, label_column: str | None = None
) -> LabeledSplit:
    """Resolve any dataset reference (see module docstring) to a labelled split."""
    from datasets import ClassLabel, Image

    ds, known_image, known_label = load_dataset_split(ref, split)
    img_col, lbl_col = _infer_columns(ds, image_column or known_image, label_column or known_label, ref)
    if len(ds) == 0:
        raise UsageError(f"dataset '{ref}' split '{split}' is empty; pick another --split or check the files")
    feature = ds.features[lbl_col]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    else:  # plain integer labels: classes 0..max
        names = [str(i) for i in range(int(max(ds[lbl_col])) + 1)]
    if not isinstance(ds.features[img_col], Image):
        raise UsageError(f"{ref}: column '{img_col}' does not hold images; pass --image-column NAME")
    # decode ourselves (in DataLoader workers) so a corrupt file is reported by name
    ds = ds.cast_column(img_col, Image(decode=False))
    return LabeledSplit(ds, img_col, lbl_col, names, ref, split)


def subset(split: LabeledSplit, max_samples: int | None, seed: int = 0) -> LabeledSplit:
    """A fixed, seeded subset (same samples for the same seed), for smoke runs and quick experiments."""
    if not max_samples or max_samples >= len(split):
        return split
    ds = split.dataset.shuffle(seed=seed).select(range(max_samples)).flatten_indices()
    return LabeledSplit(ds, split.image_column, split.label_column, split.class_names, split.name, split.split)


# ------------------------------------------------------------------------------------ decoding
class UnreadableImageError(DeitctlError):
    pass


def decode_image(value: dict[str, Any], mode: str, index: Any = None):
    """PIL image from a datasets ``Image(decode=False)`` value, converted to ``mode`` ("L" or "RGB")."""
    import io

    from PIL import Image, UnidentifiedImageError

    path = value.get("path")
    try:
        img = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(path)
        img.load()
        return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        name = path or f"sample #{index}"
        raise UnreadableImageError(f"unreadable image {name} ({type(e).__name__}: {e}); "
                                   "remove or replace the file and run again") from None


def with_transform(split: LabeledSplit, transform: Callable, channels: int) -> Dataset:
    """The split as a map-style dataset yielding ``(tensor, label)``, transformed lazily in workers."""
    mode = "L" if channels == 1 else "RGB"
    img_col, lbl_col = split.image_column, split.label_column

    def apply(batch: dict[str, list]) -> dict[str, list]:
        return {
            "x": [transform(decode_image(v, mode)) for v in batch[img_col]],
            "y": [int(y) for y in batch[lbl_col]],
        }

    return split.dataset.with_transform(apply, columns=[img_col, lbl_col])


def collate(batch: list[dict[str, Any]]):
    import torch

    return torch.stack([b["x"] for b in batch]), torch.tensor([b["y"] for b in batch], dtype=torch.long)
