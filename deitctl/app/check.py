"""``deitctl data check``: decode every image and check every label before a long run, and list what is wrong.

A map-style dataset is checked by index in parallel workers; shards (a folder of parquet / WebDataset files, or
``--streaming``) are read as a stream, each worker its own shards, so nothing is copied into the cache first and
a problem is named by its shard and key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deitctl.data.splits import LabeledSplit, StreamSplit


@dataclass
class CheckRequest:
    dataset: str
    split: str | None = None  # default: every split
    image_column: str | None = None
    label_column: str | None = None
    num_workers: int = 2
    batch_size: int = 256
    streaming: bool = False  # read as a stream (always, for a folder of shards)


def _row_problems(value: dict[str, Any], label: Any, classes: int, index: int | None, where: str,
                 path: str | None) -> list[dict[str, Any]]:
    """What is wrong with one sample: an image that does not decode (fully), a label outside the classes."""
    from deitctl.data.samples import UnreadableImageError, decode_image

    problems = []
    try:
        decode_image(value, None, index, where)
    except UnreadableImageError as e:
        problems.append({"index": index, "path": path, "problem": str(e)})
    if label is None or not 0 <= int(label) < classes:
        problems.append({"index": index, "path": path, "problem": f"label {label} is not one of the {classes} classes"})
    return problems


class _Checker:
    """Decodes each image of a split (fully: a truncated JPEG fails here, not in hour thirty) and checks its label."""

    def __init__(self, labeled: LabeledSplit) -> None:
        self.ds = labeled.dataset.select_columns([labeled.image_column, labeled.label_column])
        self.image, self.label, self.classes = labeled.image_column, labeled.label_column, labeled.num_classes
        self.where = f"{labeled.name}[{labeled.split}]"

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[int, list[dict[str, Any]]]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> tuple[int, list[dict[str, Any]]]:
        """(samples checked, their problems) for a batch of indices."""
        rows = self.ds[list(indices)]
        return len(indices), [p for index, value, label in zip(indices, rows[self.image], rows[self.label], strict=True)
                for p in _row_problems(value, label, self.classes, index, self.where, (value or {}).get("path"))]


def _stream_checker(split: StreamSplit, batch_size: int):
    """The streamed checker: each loader worker reads its own shards; yields (samples read, their problems)."""
    from torch.utils.data import IterableDataset

    class StreamChecker(IterableDataset):
        def __iter__(self):
            rows = iter(split.dataset)
            while chunk := list(itertools.islice(rows, batch_size)):
                found = []
                for row in chunk:
                    value = row[split.image_column]
                    shard = " ".join(str(row[k]) for k in ("__url__", "__key__") if k in row)
                    found += _row_problems(value, row[split.label_column], split.num_classes, None,
                                           shard or f"{split.name}[{split.split}]", shard or value.get("path"))
                yield len(chunk), found

    return StreamChecker()


def _as_is(batch: tuple[int, list[dict[str, Any]]]) -> tuple[int, list[dict[str, Any]]]:
    return batch


def check(req: CheckRequest) -> dict[str, Any]:
    """``deitctl data check``: every image decoded in parallel, every label checked; the problems listed."""
    from pathlib import Path

    from torch.utils.data import DataLoader

    from deitctl.core.console import progress
    from deitctl.data.shards import is_shard_folder
    from deitctl.data.sources import open_dataset
    from deitctl.data.splits import label_split, load_stream

    streamed = req.streaming or is_shard_folder(Path(req.dataset).expanduser())
    opened = open_dataset(req.dataset, streaming=streamed)
    names = [req.split] if req.split else list(opened.splits)
    problems, sizes = [], {}
    with progress("img") as bar:
        for name in names:
            if streamed:
                split = load_stream(req.dataset, name, req.image_column, req.label_column)
                total = split.num_examples
                loader = DataLoader(_stream_checker(split, req.batch_size), batch_size=None,
                                    num_workers=min(req.num_workers, split.num_shards))
            else:
                labeled = label_split(opened, name, req.image_column, req.label_column)
                total = len(labeled)
                loader = DataLoader(_Checker(labeled), batch_size=req.batch_size, num_workers=req.num_workers,
                                    collate_fn=_as_is)
            task = bar.add_task(f"check {name}", total=total, info="")
            sizes[name] = 0
            for count, found in loader:
                sizes[name] += count
                problems += [{"split": name, **p} for p in found]
                bar.update(task, advance=count, info=f"{len(problems)} problems")
    return {"dataset": req.dataset, "splits": sizes, "checked": sum(sizes.values()), "problems": problems}
