"""Local shards — parquet, Arrow or WebDataset (``.tar``) files — and what their metadata says without a data pass.

A folder of shards is one dataset: files grouped into splits by name (``train-00000-of-00012.parquet``,
``val/…``), features from the folder's ``README.md`` (the Hub's dataset card, YAML ``dataset_info``: how
``deitctl data convert`` and the Hub keep class names), sample counts from the card's split info, timm's
``_info.json``, parquet footers or tar headers (never by decoding a sample).
"""

from __future__ import annotations

import itertools
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from datasets import Features

BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".tar": "webdataset"}
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "validation", "val": "validation",
               "valid": "validation"}
SHARD_HINT = "parquet/arrow/WebDataset (.tar) files"


@dataclass
class Shards:
    """Data files of one kind, by split."""

    builder: str  # "parquet", "arrow" or "webdataset"
    files: dict[str, list[str]]
    card: Path | None = None  # README.md with the features and split sizes

    def _card_info(self) -> dict:
        if self.card is None:
            return {}
        from huggingface_hub import DatasetCard

        info = DatasetCard.load(self.card).data.to_dict().get("dataset_info") or {}
        return info[0] if isinstance(info, list) else info

    def features(self) -> Features | None:
        """The features the dataset card declares (class names included), as the Hub reads them."""
        from datasets import Features, Value

        info = self._card_info()
        if not info.get("features"):
            return None
        features = Features._from_yaml_list(info["features"])
        if self.builder == "webdataset":  # each sample's key and shard, which name it in an error
            features.update({k: Value("string") for k in ("__key__", "__url__") if k not in features})
        return features

    def counts(self) -> dict[str, int]:
        """Samples per split: declared (card, timm's ``_info.json``), else counted from footers or tar headers."""
        declared = {SPLIT_NAMES.get(s["name"], s["name"]): int(s["num_examples"])
                    for s in self._card_info().get("splits", []) if "num_examples" in s}
        first = Path(next(iter(self.files.values()))[0])
        timm_info = next((p for p in (first.parent / "_info.json", first.parent.parent / "_info.json") if p.is_file()),
                         None)
        if timm_info is not None:  # {"splits": {"train": {"num_samples": N}}}
            for name, split in json.loads(timm_info.read_text()).get("splits", {}).items():
                declared.setdefault(SPLIT_NAMES.get(name, name), int(split.get("num_samples", 0)))
        return {split: declared.get(split) or sum(file_count(Path(f)) for f in files)
                for split, files in self.files.items()}

    def check_schemas(self) -> None:
        """Every shard has the first shard's columns; else one line naming the two files and the fix."""
        files = [Path(f) for group in self.files.values() for f in group]
        first = _columns(files[0])
        for f in files[1:]:
            columns = _columns(f)
            if columns != first:
                raise UsageError(f"{f}: columns ({', '.join(sorted(columns))}) differ from those of {files[0]} "
                                 f"({', '.join(sorted(first))}); the shards of one dataset share one schema: rewrite "
                                 "the odd shard or move it to another folder")


def split_of(path: Path) -> str | None:
    """A split name from a data file's stem (``train-0000.parquet``) or its folder (``test/x.arrow``)."""
    for token in (path.stem.split("-")[0].split("_")[0].split(".")[0].lower(), path.parent.name.lower()):
        if token in SPLIT_NAMES:
            return SPLIT_NAMES[token]
    return None


def local_shards(path: Path) -> Shards | None:
    """The data files at ``path`` (a file, or a folder of them), by split; None if there are none."""
    if path.is_file():
        if path.suffix not in BUILDERS:
            raise UsageError(f"{path}: not a dataset file; pass an image folder, {SHARD_HINT} or a save_to_disk "
                             "directory")
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.suffix in BUILDERS and not p.name.startswith("."))
    if not files:
        return None
    kinds = sorted({f.suffix for f in files})
    if len(kinds) > 1:
        raise UsageError(f"{path}: data files of several kinds ({', '.join(kinds)}); keep one kind per dataset folder")
    by_split: dict[str, list[str]] = {}
    for f in files:
        by_split.setdefault(split_of(f) or "train", []).append(str(f))
    card = path / "README.md" if path.is_dir() and (path / "README.md").is_file() else None
    return Shards(BUILDERS[kinds[0]], by_split, card)


def is_shard_folder(path: Path) -> bool:
    """A shard file, or a folder with shards at its top or in its split folders (not walked further: an image
    folder of a million files answers at once)."""
    if not path.exists() or (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        return False
    if path.is_file():
        return path.suffix in BUILDERS
    return any(p.suffix in BUILDERS for p in itertools.chain(path.glob("*"), path.glob("*/*")))


def file_count(path: Path) -> int:
    """Samples in one shard: a parquet footer's row count, or a tar's distinct keys (headers only)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".arrow":
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all().num_rows
    with tarfile.open(path, "r:") as tar:  # seeks over each member's data
        return len({member.name.split(".", 1)[0] for member in tar if member.isfile()})


def _columns(path: Path) -> set[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return {f"{field.name}: {field.type}" for field in pq.read_schema(path)}
    if path.suffix == ".arrow":
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            return {f"{field.name}: {field.type}" for field in pa.ipc.open_stream(source).schema}
    with tarfile.open(path, "r:") as tar:  # the extensions of the first sample
        key, found = None, set()
        for member in tar:
            name, _, ext = member.name.partition(".")
            if key not in (None, name):
                break
            key = name
            found.add(ext)
        return found
