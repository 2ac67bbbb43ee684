"""Any dataset deitctl opens → parquet or WebDataset shards of about ``shard_size`` bytes: what ``--streaming``
reads, what the Hub serves, what a multi-node job copies to local disks.

Images keep their encoded bytes (a JPEG stays the same JPEG; nothing is decoded), labels stay class indices and
the class names travel with the shards: in each parquet file's schema (``datasets``' feature metadata) and in
the folder's ``README.md`` dataset card (features, split sizes, which files hold which split), as on the Hub.

The training split is written in a seeded random order — shards of a class-sorted folder would otherwise hold
a few classes each, and a stream reads shards a block at a time. Shard boundaries depend only on that order and
the sizes, so a conversion killed midway resumes: each shard is written under a temporary name and renamed when
complete, ``.convert.json`` lists the finished ones, and a re-run skips their rows.

A WebDataset sample is ``KEY.EXT`` (the image, EXT its format) and ``KEY.cls`` (the class index). One dataset has
one image extension (its schema): images in another format than the first are re-encoded to it, and counted.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.atomic import write_text
from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from deitctl.data.splits import LabeledSplit

FORMATS = ("parquet", "webdataset")
MANIFEST = ".convert.json"
ROW_GROUP = 100  # rows per parquet row group: a streaming reader holds about one group per worker
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"P5", "pgm"), (b"P6", "ppm"), (b"GIF8", "gif"),
          (b"BM", "bmp"))


@dataclass
class Plan:
    """What is being converted; a re-run must match it to resume (else the output is someone else's)."""

    source: str
    format: str
    shard_size: int
    seed: int
    max_samples: int | None = None
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split → {"rows", "shards": [...], "done"}

    def key(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "shard_size": self.shard_size, "seed": self.seed,
                "max_samples": self.max_samples}


def image_format(data: bytes) -> str | None:
    """The file extension an image's bytes call for (by their magic number), None if not recognised."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), None)


def _bytes_of(value: dict[str, Any]) -> bytes:
    if value.get("bytes"):
        return value["bytes"]
    with open(value["path"], "rb") as f:
        return f.read()


def reencode(data: bytes, ext: str) -> bytes:
    """The image in format ``ext`` (JPEG at quality 95 from RGB; others lossless)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    if ext == "jpg":
        img.convert("RGB").save(out, "JPEG", quality=95)
    else:
        img.save(out, {"pgm": "PPM", "ppm": "PPM"}.get(ext, ext.upper()))
    return out.getvalue()


def open_output(out: Path, plan: Plan) -> Plan:
    """The plan to follow: a new one, or the unfinished conversion already in ``out`` (resumed)."""
    manifest = out / MANIFEST
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if {k: saved.get(k) for k in plan.key()} != plan.key():
            raise UsageError(f"{out} holds a conversion of {saved.get('source')} ({saved.get('format')}, shard size "
                             f"{saved.get('shard_size')}, seed {saved.get('seed')}); choose another OUT, or run the same "
                             "command as before to finish it")
        plan.splits = saved["splits"]
        return plan
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not an unfinished conversion; choose an empty or new OUT")
    out.mkdir(parents=True, exist_ok=True)
    return plan


def save_manifest(out: Path, plan: Plan) -> None:
    write_text(out / MANIFEST, json.dumps({**plan.key(), "splits": plan.splits}, indent=1), durable=True)


def rows_in_order(split: LabeledSplit, order: list[int], start: int, batch: int = 256) -> Iterator[tuple[bytes, int, str]]:
    """(image bytes, label, name) from position ``start`` of ``order``; files are read by a few threads."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        for at in range(start, len(order), batch):
            rows = split.dataset[order[at:at + batch]]
            images, labels = rows[split.image_column], rows[split.label_column]
            for value, data, label in zip(images, pool.map(_bytes_of, images), labels, strict=True):
                yield data, int(label), os.path.basename(value.get("path") or "")


class ShardWriter:
    """Writes one split's shards: ``{split}-{index:05d}.{parquet|tar}``, each complete before it is named."""

    def __init__(self, out: Path, split: str, kind: str, class_names: list[str], image_ext: str | None) -> None:
        self.out, self.split, self.kind, self.class_names, self.image_ext = out, split, kind, class_names, image_ext
        self.reencoded = 0

    def name(self, index: int) -> str:
        return f"{self.split}-{index:05d}.{'parquet' if self.kind == 'parquet' else 'tar'}"

    def write(self, index: int, rows: list[tuple[bytes, int, str]], start: int) -> dict[str, Any]:
        """Write shard ``index`` (rows ``start``… of the split's order) under a temporary name, then rename it."""
        final = self.out / self.name(index)
        tmp = self.out / f".{final.name}.tmp"
        (self._parquet if self.kind == "parquet" else self._tar)(tmp, rows, start)
        os.replace(tmp, final)
        return {"file": final.name, "start": start, "end": start + len(rows), "bytes": final.stat().st_size}

    def _parquet(self, path: Path, rows: list[tuple[bytes, int, str]], first_key: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self.features().arrow_schema
        with pq.ParquetWriter(str(path), schema) as writer:
            for at in range(0, len(rows), ROW_GROUP):
                part = rows[at:at + ROW_GROUP]
                image = pa.array([{"bytes": d, "path": n or None} for d, _, n in part], schema.field("image").type)
                writer.write_table(pa.table({"image": image, "label": pa.array([y for _, y, _ in part], pa.int64())},
                                            schema=schema))

    def _tar(self, path: Path, rows: list[tuple[bytes, int, str]], first_key: int) -> None:
        with tarfile.open(path, "w") as tar:
            for i, (data, label, _) in enumerate(rows):
                if image_format(data) not in (None, self.image_ext):  # unrecognised bytes are kept: data check names them
                    data, self.reencoded = reencode(data, self.image_ext), self.reencoded + 1
                key = f"{self.split}_{first_key + i:08d}"
                for ext, payload in ((self.image_ext, data), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(payload), 0
                    tar.addfile(info, io.BytesIO(payload))

    def features(self):
        from datasets import ClassLabel, Features, Image

        if self.kind == "parquet":
            return Features({"image": Image(), "label": ClassLabel(names=self.class_names)})
        return Features({self.image_ext: Image(), "cls": ClassLabel(names=self.class_names)})


def convert_split(split: LabeledSplit, writer: ShardWriter, shards: list[dict[str, Any]], shard_size: int,
                  order: list[int], on_shard: Callable[[dict[str, Any]], None]) -> None:
    """Append this split's shards to ``shards``, from the row where the finished ones end; ``on_shard(entry)``
    after each shard is in place (the caller records it, so a killed run resumes after it)."""
    start = shards[-1]["end"] if shards else 0
    pending: list[tuple[bytes, int, str]] = []
    size = 0
    for row in rows_in_order(split, order, start):
        pending.append(row)
        size += len(row[0])
        if size >= shard_size:
            shards.append(writer.write(len(shards), pending, start))
            on_shard(shards[-1])
            start, pending, size = start + len(pending), [], 0
    if pending:
        shards.append(writer.write(len(shards), pending, start))
        on_shard(shards[-1])


def write_card(out: Path, plan: Plan, features: Any) -> None:
    """README.md: the dataset card the Hub and deitctl read — features (class names), split sizes, data files."""
    import yaml

    kind = plan.format
    info = {"features": features._to_yaml_list(),
            "splits": [{"name": s, "num_bytes": sum(x["bytes"] for x in st["shards"]), "num_examples": st["rows"]}
                       for s, st in plan.splits.items()]}
    ext = "parquet" if kind == "parquet" else "tar"
    configs = [{"config_name": "default",
                "data_files": [{"split": s, "path": f"{s}-*.{ext}"} for s in plan.splits]}]
    front = yaml.safe_dump({"dataset_info": info, "configs": configs}, sort_keys=False, allow_unicode=True)
    write_text(out / "README.md", f"---\n{front}---\n\n# {out.name}\n\nShards written by `deitctl data convert "
                                  f"{plan.source}` ({kind}); read them with `deitctl train --dataset {out} --streaming`.\n")
