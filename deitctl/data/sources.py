"""All data enters through Hugging Face ``datasets``: named datasets, Hub ids and local files.

``open_dataset`` finds every split of a reference, whatever the source:

  * a named dataset (``fashion-mnist``, ``cifar10``, ``cifar100`` (fine labels) / ``cifar100-coarse``,
    ``flowers102``, ``stanford-cars``, ``imagenet-1k``; ``inat18``/``inat19`` from local folders),
  * a Hub id ``org/name`` (with ``--image-column/--label-column`` where they cannot be inferred);
    offline, only what is already in the ``datasets`` cache — otherwise one line saying so and how
    to provide a local copy,
  * a local path: an image-folder tree (``[split/]class/xxx.jpg``), parquet/arrow files (split from
    the file or folder name), or a ``save_to_disk`` directory.

``deitctl.data.splits`` then names the image and label columns and the classes of one split.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError, UsageError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Iterator

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
_SPLIT_NAMES = {"train": "train", "test": "test", "validation": "validation", "val": "validation",
                "valid": "validation"}
_SPLIT_ALIASES = {"validation": ("val", "valid", "test"), "test": ("validation", "val"), "val": ("validation",)}
LOCAL_HINT = "an image folder, parquet/arrow files or a save_to_disk directory"


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
            with quiet_datasets():
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
            with quiet_datasets():
                return _as_splits(datasets.load_dataset(kind, data_files=data_files))
        except ValueError as e:  # 'Instruction "test" corresponds to no data!'
            if "corresponds to no data" not in str(e):
                raise
            raise _empty_split_error(path, str(e).split('"')[1:2]) from None
    try:
        with quiet_datasets():
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


@functools.cache
def _load_hub(hub_id: str, name: str) -> dict[str, Dataset]:
    """All splits of a Hub dataset; offline that means the local ``datasets`` cache only.

    datasets 5.2 raises ``ConnectionError`` both with ``HF_DATASETS_OFFLINE=1`` ("Couldn't reach … on
    the Hub (OfflineModeIsEnabled)") and when the Hub is unreachable (after retries,
    ``LocalEntryNotFoundError``), and ``DatasetNotFoundError`` when the Hub answers that no such
    (or no accessible) dataset exists.
    """
    from deitctl.hub.reach import cache_only, online

    offline = not online(datasets=True)  # unreachable: the cache at once, instead of minutes of retries
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        with quiet_datasets(), cache_only(offline):
            return _as_splits(datasets.load_dataset(hub_id))
    except (ConnectionError, FileNotFoundError) as e:
        if isinstance(e, FileNotFoundError) and not offline:  # offline, datasets' way of saying "not cached"
            raise
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
        from deitctl.data import fashion_mnist

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


def hub_backed(ref: str) -> bool:
    """Whether opening ``ref`` goes to the Hub (a named dataset without a local copy, or an org/name id)."""
    if ref == "fashion-mnist" and not os.environ.get("DEITCTL_FASHION_MNIST_HUB"):
        from deitctl.data import fashion_mnist

        return not fashion_mnist.idx_available()
    if ref in NAMED:
        src = NAMED[ref]
        return src.hub_id is not None and not (src.local_env and os.environ.get(src.local_env))
    return not _is_local(ref) and ref.count("/") == 1


def preflight(ref: str) -> None:
    """Open a Hub-backed dataset now (kept for later, opened once per process): offline and not cached,
    the command fails in a second, before the minutes of model building that would come first."""
    if hub_backed(ref):
        open_dataset(ref)


def load_dataset_split(ref: str, split: str) -> tuple[Dataset, str | None, str | None]:
    """The raw Dataset of a split, plus the image/label columns a named dataset is known to use."""
    opened = open_dataset(ref)
    return opened.pick(split), opened.image_column, opened.label_column
