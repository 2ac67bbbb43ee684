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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError, UsageError, did_you_mean
from deitctl.data.shards import SHARD_HINT, local_shards

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
_SPLIT_ALIASES = {"validation": ("val", "valid", "test"), "test": ("validation", "val"), "val": ("validation",)}
LOCAL_HINT = f"an image folder, {SHARD_HINT} or a save_to_disk directory"
LOCAL_SHARDS = 64  # shards of a map-style dataset when it is streamed


@dataclass
class OpenedDataset:
    """Every split of a dataset reference, plus the columns a named dataset is known to use."""

    splits: dict[str, Any]  # Dataset, or IterableDataset when streamed
    image_column: str | None
    label_column: str | None
    name: str
    counts: dict[str, int] = field(default_factory=dict)  # samples per split, where a stream's metadata says

    def stream(self) -> OpenedDataset:
        """Map-style splits as streams of their memory-mapped rows (in shards, one per loader worker or more)."""
        splits = {name: ds.to_iterable_dataset(num_shards=max(1, min(LOCAL_SHARDS, len(ds))))
                  for name, ds in self.splits.items()}
        return OpenedDataset(splits, self.image_column, self.label_column, self.name,
                             {name: len(ds) for name, ds in self.splits.items()})

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


def _as_splits(loaded: Any) -> dict[str, Dataset]:
    from datasets import DatasetDict

    return dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}


def _load_local(path: Path, streaming: bool = False) -> OpenedDataset:
    """A local dataset, map-style; with ``streaming``, shards are read as streams (never copied into the cache)."""
    splits = _load_local_splits(path, streaming)
    if isinstance(splits, OpenedDataset):
        return splits
    opened = OpenedDataset(splits, None, None, str(path))
    return opened.stream() if streaming else opened


def _load_local_splits(path: Path, streaming: bool) -> dict[str, Dataset] | OpenedDataset:
    import datasets

    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        try:
            with quiet_datasets():
                return _as_splits(datasets.load_from_disk(str(path)))
        except IndexError:  # datasets 5.2 cannot reload a split saved with no rows
            raise _empty_split_error(path, _empty_saved_splits(path)) from None
    if path.is_dir():
        from deitctl.data.folder import open_folder

        indexed = open_folder(path)  # a plain [split/]class/image tree: one directory pass, then an index
        if indexed is not None:
            return indexed
    shards = local_shards(path)
    if shards is not None:
        shards.check_schemas()
        try:
            with quiet_datasets():
                loaded = datasets.load_dataset(shards.builder, data_files=shards.files, features=shards.features(),
                                               streaming=streaming)
            return OpenedDataset(dict(loaded), None, None, str(path), shards.counts()) if streaming \
                else _as_splits(loaded)
        except ValueError as e:  # 'Instruction "test" corresponds to no data!'
            if "corresponds to no data" not in str(e):
                raise
            raise _empty_split_error(path, str(e).split('"')[1:2]) from None
    try:  # a tree with a metadata file (labels from metadata.csv/jsonl): datasets' own builder
        with quiet_datasets():
            return _as_splits(datasets.load_dataset("imagefolder", data_dir=str(path)))
    except FileNotFoundError:  # datasets' EmptyDatasetError / DataFilesNotFoundError
        raise UsageError(f"{path}: no images, parquet, arrow or WebDataset (.tar) files found; "
                         f"pass {LOCAL_HINT}") from None


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

    try:
        with _hub_errors(hub_id, name), quiet_datasets(), cache_only(offline):
            return _as_splits(datasets.load_dataset(hub_id))
    except FileNotFoundError:
        if not offline:
            raise
        raise _not_cached(hub_id, name) from None  # offline, datasets' way of saying "not cached"


@functools.cache
def _stream_hub(hub_id: str, name: str) -> tuple[dict[str, Any], dict[str, int]]:
    """All splits of a Hub dataset as streams (read over HTTP as trained on), and their sizes from its card.

    Resolved once per process: the train and eval splits come from the same commit, and the checks before the
    run and the run itself do not ask the Hub four times."""
    from deitctl.hub.reach import online

    if not online(datasets=True):
        raise DeitctlError(f"--streaming reads '{hub_id}' from the Hub, which cannot be reached; drop --streaming "
                           "to use a copy in the datasets cache, or stream local shards (`deitctl data convert`)")
    import datasets

    with _hub_errors(hub_id, name), quiet_datasets():
        streamed = datasets.load_dataset(hub_id, streaming=True)
    info = next(iter(streamed.values())).info.splits or {}
    return dict(streamed), {split: info[split].num_examples for split in info if info[split].num_examples}


@contextlib.contextmanager
def _hub_errors(hub_id: str, name: str) -> Iterator[None]:
    from datasets.exceptions import DatasetNotFoundError

    try:
        yield
    except ConnectionError:
        raise _not_cached(hub_id, name) from None
    except DatasetNotFoundError:
        raise UsageError(f"dataset '{name}' not found on the Hub ({hub_id}); check the id, or for a gated "
                         "dataset accept its terms and log in (`hf auth login`)") from None


def _not_cached(hub_id: str, name: str) -> DeitctlError:
    return DeitctlError(
        f"dataset '{name}' ({hub_id}) is not in the local datasets cache and the Hub cannot be reached; "
        f"download it once where the Hub is reachable (datasets.load_dataset('{hub_id}'), same HF_HOME), "
        f"or use a local copy instead: {LOCAL_HINT}")


def open_dataset(ref: str, streaming: bool = False) -> OpenedDataset:
    """Every split of a dataset reference (see the module docstring), without decoding any image.

    ``streaming``: the splits are ``IterableDataset``s — Hub data read over HTTP, local shards read in
    place, anything else streamed from its memory-mapped rows — with ``counts`` from metadata.
    """
    if ref in NAMED:
        src = NAMED[ref]
        local = os.environ.get(src.local_env) if src.local_env else None
        if ref == "fashion-mnist" and not os.environ.get("DEITCTL_FASHION_MNIST_HUB"):
            from deitctl.data import fashion_mnist

            if fashion_mnist.idx_available():
                opened = OpenedDataset(_as_splits(fashion_mnist.load_local()), "image", "label", ref)
                return opened.stream() if streaming else opened
        if local:
            return _renamed(_load_local(Path(local).expanduser(), streaming), ref)
        if src.hub_id is None:
            raise UsageError(f"dataset '{ref}' has no Hub copy: set {src.local_env}=PATH or pass a local path "
                             "(an image folder with train/ and val/ sub-folders)")
        return _from_hub(src.hub_id, ref, streaming, src.image_column, src.label_column)
    if _is_local(ref):
        return _renamed(_load_local(Path(ref).expanduser(), streaming), ref)
    if ref.count("/") == 1:
        return _from_hub(ref, ref, streaming)
    raise UsageError(f"unknown dataset '{ref}'{did_you_mean(ref, NAMED)}; use a name ({', '.join(NAMED)}), "
                     "a Hub id org/name, or a local path")


def _from_hub(hub_id: str, name: str, streaming: bool, image: str | None = None, label: str | None = None) -> OpenedDataset:
    if streaming:
        splits, counts = _stream_hub(hub_id, name)
        return OpenedDataset(splits, image, label, name, counts)
    return OpenedDataset(_load_hub(hub_id, name), image, label, name)


def _renamed(opened: OpenedDataset, name: str) -> OpenedDataset:
    opened.name = name
    return opened


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
