"""Image folders — ``ROOT/[split/]class/…/image`` — opened in one directory pass, then from a small index.

``datasets``' own ``imagefolder`` builder resolves its data files with dozens of glob patterns, each
walking the whole tree: 76 s for 33,000 files, about an hour for ImageNet's 1.33 million, on every
open. Here one ``os.scandir`` pass (as torchvision's ``ImageFolder`` does) lists the splits, class
folders and images, and the result is kept as an Arrow file of ``(path, label)`` per split in the
deitctl cache, keyed by the folder's real path. A re-open stats the folder's directories only (a file
added, removed or renamed changes its directory's modification time) and memory-maps the index.

A directory modified within ``RACY_S`` seconds of the scan is not trusted to have a final listing
(coarse file-system clocks could hide a change made in the same tick), so such a scan is used but not
kept: the next open scans again. The index never outlives a change to the tree.

Layout rules (each violation is one line naming the path and the fix): split folders ``train``,
``val``/``validation``/``valid`` and ``test`` at the top, or class folders only (then one ``train``
split); images anywhere below a class folder; no images beside class folders; no empty class folder;
every split with the same classes. Other files (README, label lists) are ignored, as by torchvision.
A tree with ``metadata.csv``/``metadata.jsonl`` (labels from a file) is left to ``datasets``' builder.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.cache import cache_home
from deitctl.core.errors import UsageError
from deitctl.data.shards import BUILDERS, SPLIT_NAMES

if TYPE_CHECKING:
    from datasets import Dataset

IMAGE_EXTENSIONS = frozenset((".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp",
                              ".gif"))
METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
INDEX_VERSION = 1
RACY_S = 2.0  # a directory changed this recently may still change within the same clock tick


@dataclass
class Scan:
    """One pass over the tree: per split the images (absolute paths) and their class index."""

    root: Path
    classes: list[str]
    splits: dict[str, tuple[list[str], list[int]]]
    dirs: dict[str, int] = field(default_factory=dict)  # directory (relative) → mtime in ns, as scanned


def index_dir(root: Path) -> Path:
    """Where the index of ``root`` lives: one folder per real path, under the deitctl cache."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
    return cache_home() / "folder-index" / key


def open_folder(root: Path) -> dict[str, Dataset] | None:
    """Every split of an image folder as a ``datasets`` Dataset (``image``: Image, ``label``: ClassLabel).

    None when ``root`` is not an image folder this reader handles (data files, a metadata file).
    """
    root = root.resolve()
    cached = _read_index(root)
    if cached is not None:
        return cached
    started = time.time_ns()
    scan = scan_folder(root)
    if scan is None:
        return None
    racy = any(m >= started - RACY_S * 1e9 for m in scan.dirs.values())
    return _write_index(scan, keep=not racy)


# ------------------------------------------------------------------------------------------- scan
def _walk_class(top: str, rel: str, dirs: dict[str, int], files: list[str]) -> None:
    """Every image below one class folder (recursively, like torchvision), recording each directory's mtime."""
    dirs[rel] = os.stat(top).st_mtime_ns
    with os.scandir(top) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                _walk_class(entry.path, f"{rel}/{entry.name}", dirs, files)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(entry.path)


def _listing(path: Path, rel: str, dirs: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    """(sub-folders, image files, other files) of one directory, hidden entries skipped."""
    dirs[rel] = os.stat(path).st_mtime_ns
    folders, images, other = [], [], []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                folders.append(entry.name)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(entry.name)
            else:
                other.append(entry.name)
    return sorted(folders), sorted(images), other


def _not_a_tree(other: list[str]) -> bool:
    return any(name in METADATA_FILES or name.endswith(tuple(BUILDERS)) for name in other)


def scan_folder(root: Path) -> Scan | None:
    """One directory pass; None when ``root`` holds data files or a metadata file instead of a plain tree."""
    dirs: dict[str, int] = {}
    folders, images, other = _listing(root, ".", dirs)
    if _not_a_tree(other) or (not folders and not images):
        return None
    split_dirs = [f for f in folders if f.lower() in SPLIT_NAMES]
    if split_dirs and len(split_dirs) < len(folders):
        others = [f for f in folders if f not in split_dirs]
        raise UsageError(f"{root}: split folders ({', '.join(split_dirs)}) beside other folders "
                         f"({_some(others)}): class folders at mixed depths; put every class folder under a split "
                         "folder (train/, val/, test/), or use no split folders at all")
    parts = {SPLIT_NAMES[f.lower()]: (root / f, f) for f in split_dirs} if split_dirs else {"train": (root, ".")}
    if len(parts) < len(split_dirs):
        raise UsageError(f"{root}: two folders name the same split ({', '.join(split_dirs)}); keep one")
    per_split: dict[str, dict[str, list[str]]] = {}
    for split, (path, rel) in parts.items():
        sub_folders, sub_images, sub_other = (folders, images, other) if rel == "." else _listing(path, rel, dirs)
        if _not_a_tree(sub_other):
            return None
        if sub_images:
            where = "beside class folders" if sub_folders else "but no class folders"
            raise UsageError(f"{path}: images ({_some(sub_images)}) {where}: class folders at mixed depths; move "
                             "each image into a folder named after its class")
        if not sub_folders:
            raise UsageError(f"{path}: no class folders; put the images in one folder per class ({path}/CLASS/…)")
        classes: dict[str, list[str]] = {}
        for name in sub_folders:
            files: list[str] = []
            _walk_class(str(path / name), f"{rel}/{name}", dirs, files)
            if not files:
                raise UsageError(f"{path / name}: empty class folder (no images); add images or remove the folder")
            classes[name] = sorted(files)
        per_split[split] = classes
    names = sorted(next(iter(per_split.values())))
    _check_same_classes(root, parts, per_split)
    index = {name: i for i, name in enumerate(names)}
    splits = {}
    for split, classes in per_split.items():
        paths = [p for name in sorted(classes) for p in classes[name]]
        labels = [index[name] for name in sorted(classes) for _ in classes[name]]
        splits[split] = (paths, labels)
    return Scan(root, names, splits, dirs)


def _check_same_classes(root: Path, parts: dict[str, tuple[Path, str]], per_split: dict[str, dict[str, Any]]) -> None:
    union = set().union(*(set(c) for c in per_split.values()))
    for split, classes in per_split.items():
        missing = sorted(union - set(classes))
        if missing:
            have = next(s for s, c in per_split.items() if missing[0] in c)
            raise UsageError(f"{parts[split][0]}: no class folder for {_some(missing)} (present in "
                             f"{parts[have][0].name}/); every split needs the same class folders: add them "
                             f"(with images) or remove those classes from the other splits")


def _some(names: list[str], shown: int = 3) -> str:
    more = f", … ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# ------------------------------------------------------------------------------------------ index
def _features(classes: list[str]):
    from datasets import ClassLabel, Features, Image

    return Features({"image": Image(), "label": ClassLabel(names=classes)})


def _table(paths: list[str], labels: list[int], features: Any):
    import pyarrow as pa

    image = pa.StructArray.from_arrays([pa.nulls(len(paths), pa.binary()), pa.array(paths, pa.string())],
                                       names=["bytes", "path"])
    table = pa.table({"image": image, "label": pa.array(labels, pa.int64())})
    return table.replace_schema_metadata(features.arrow_schema.metadata)


def _write_index(scan: Scan, keep: bool) -> dict[str, Dataset]:
    """The splits as Datasets; with ``keep``, also written as the index (Arrow files first, then index.json)."""
    import pyarrow as pa
    from datasets import Dataset

    features = _features(scan.classes)
    tables = {split: _table(paths, labels, features) for split, (paths, labels) in scan.splits.items()}
    if not keep:
        return {split: Dataset(table) for split, table in tables.items()}
    where = index_dir(scan.root)
    where.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{time.time_ns()}"
    files = {}
    for split, table in tables.items():
        files[split] = f"{split}-{tag}.arrow"
        tmp = where / f".{files[split]}.tmp"
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, where / files[split])
    record = {"version": INDEX_VERSION, "root": str(scan.root), "files": files, "dirs": scan.dirs,
              "classes": len(scan.classes)}
    tmp = where / f".index-{tag}.json.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, where / "index.json")
    for stale in where.glob("*.arrow"):  # an older index's files
        if stale.name not in files.values():
            stale.unlink(missing_ok=True)
    return {split: Dataset.from_file(str(where / name)) for split, name in files.items()}


def _read_index(root: Path) -> dict[str, Dataset] | None:
    """The indexed splits, if an index exists and every directory it saw is unchanged; else None."""
    from datasets import Dataset

    where = index_dir(root)
    try:
        record = json.loads((where / "index.json").read_text())
        if record.get("version") != INDEX_VERSION or record.get("root") != str(root):
            return None
        for rel, mtime in record["dirs"].items():
            if os.stat(root / rel).st_mtime_ns != mtime:
                return None
        return {split: Dataset.from_file(str(where / name)) for split, name in record["files"].items()}
    except (OSError, ValueError, KeyError):  # none yet, a directory gone, or a half-removed index: scan again
        return None
