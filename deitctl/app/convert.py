"""``deitctl data convert``: any dataset deitctl opens, written as parquet or WebDataset shards
(``deitctl.data.convert``), with a progress bar, resumable after a kill."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ConvertRequest:
    source: str
    out: Path
    format: str = "parquet"  # or "webdataset"
    shard_size: str = "500MB"
    split: str | None = None  # default: every split
    image_column: str | None = None
    label_column: str | None = None
    max_samples: int | None = None  # a seeded subset of each split
    seed: int = 0


def convert(req: ConvertRequest) -> dict[str, Any]:
    """``deitctl data convert``: every split of any dataset deitctl opens, as shards (``deitctl.data.convert``)."""
    import numpy as np
    from datasets.utils.py_utils import convert_file_size_to_int

    from deitctl.core.console import progress
    from deitctl.core.errors import UsageError
    from deitctl.data import convert as shards
    from deitctl.data.sources import open_dataset
    from deitctl.data.splits import label_split, subset

    if req.format not in shards.FORMATS:
        raise UsageError(f"--format {req.format}: choose one of {', '.join(shards.FORMATS)}")
    try:
        size = int(req.shard_size) if req.shard_size.isdigit() else convert_file_size_to_int(req.shard_size)
    except ValueError:
        raise UsageError(f"--shard-size {req.shard_size}: give bytes or a size such as 500MB or 1GiB") from None
    opened = open_dataset(req.source)
    names = [req.split] if req.split else list(opened.splits)
    labeled = {name: subset(label_split(opened, name, req.image_column, req.label_column), req.max_samples, req.seed)
               for name in names}
    plan = shards.open_output(req.out, shards.Plan(req.source, req.format, size, req.seed, req.max_samples))
    first = next(iter(labeled.values()))
    ext = (shards.image_format(shards._bytes_of(first.dataset[0][first.image_column])) or "png") \
        if req.format == "webdataset" else None
    reencoded = 0
    with progress("img") as bar:
        for name, split in labeled.items():
            state = plan.splits.setdefault(name, {"rows": len(split), "shards": [], "done": False})
            writer = shards.ShardWriter(req.out, name, req.format, split.class_names, state.setdefault("ext", ext))
            if not state["done"]:
                n = len(split)
                order = np.random.default_rng(req.seed).permutation(n).tolist() if name == "train" else list(range(n))
                task = bar.add_task(f"convert {name}", total=n, info="",
                                    completed=state["shards"][-1]["end"] if state["shards"] else 0)

                def on_shard(entry: dict[str, Any], task: Any = task) -> None:
                    shards.save_manifest(req.out, plan)
                    bar.update(task, advance=entry["end"] - entry["start"], info=entry["file"])

                shards.convert_split(split, writer, state["shards"], size, order, on_shard)
                state["done"] = True
                shards.save_manifest(req.out, plan)
                reencoded += writer.reencoded
    shards.write_card(req.out, plan, writer.features())
    return {"out": str(req.out), "format": req.format, "reencoded": reencoded,
            "splits": {name: {"rows": st["rows"], "shards": len(st["shards"]),
                              "bytes": sum(s["bytes"] for s in st["shards"])} for name, st in plan.splits.items()}}
