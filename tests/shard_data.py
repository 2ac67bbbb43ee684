"""Small shard sets the streaming tests build themselves: parquet (with ClassLabel names in the schema) and
WebDataset tars (class names in a README dataset card, as the Hub keeps them)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

CLASSES = ["zero", "one", "two", "three"]


def numbered_images(n: int, size: int = 16, seed: int = 0):
    """Grayscale images whose top-left pixel is the sample's number (0..255) — so a test can tell which sample
    a tensor came from — and otherwise the quadrant pattern of conftest.make_images."""
    from conftest import make_images

    images, labels = make_images(n, size, 1, len(CLASSES), seed)
    out = []
    for i, img in enumerate(images):
        arr = np.asarray(img).copy()
        arr[0, 0] = i
        from PIL import Image

        out.append(Image.fromarray(arr, mode="L"))
    return out, labels


def write_parquet(root: Path, shards: dict[str, int], per_shard: int | list[int] = 16, size: int = 16) -> Path:
    """``root/{split}-{i:05d}-of-{n:05d}.parquet``; sample numbers run on across the shards of a split."""
    import datasets
    from datasets import ClassLabel, Dataset, Features, Image

    datasets.disable_progress_bars()
    features = Features({"image": Image(), "label": ClassLabel(names=CLASSES)})
    root.mkdir(parents=True, exist_ok=True)
    for split, count in shards.items():
        sizes = per_shard if isinstance(per_shard, list) else [per_shard] * count
        images, labels = numbered_images(sum(sizes), size, seed=0 if split == "train" else 1)
        start = 0
        for i, n in enumerate(sizes):
            part = Dataset.from_dict({"image": images[start:start + n], "label": labels[start:start + n]},
                                     features=features)
            part.to_parquet(str(root / f"{split}-{i:05d}-of-{count:05d}.parquet"))
            start += n
    return root


def card(root: Path, splits: dict[str, int], names: list[str] = CLASSES, image: str = "jpg",
         label: str = "cls") -> None:
    """A README.md dataset card declaring the WebDataset's features (ClassLabel names) and split sizes."""
    lines = ["---", "dataset_info:", "  features:", f"  - name: {image}", "    dtype: image", f"  - name: {label}",
             "    dtype:", "      class_label:", "        names:"]
    lines += [f"          '{i}': {name}" for i, name in enumerate(names)]
    lines += ["  splits:"] + [f"  - name: {s}\n    num_examples: {n}" for s, n in splits.items()] + ["---", ""]
    (root / "README.md").write_text("\n".join(lines))


def write_tars(root: Path, shards: dict[str, int], per_shard: int = 16, corrupt: int | None = None) -> Path:
    """WebDataset shards ``root/{split}-{i:05d}.tar`` of ``KEY.png`` + ``KEY.cls``; sample ``corrupt`` of the train
    split gets bytes that are not an image."""
    root.mkdir(parents=True, exist_ok=True)
    for split, count in shards.items():
        images, labels = numbered_images(count * per_shard, seed=0 if split == "train" else 1)
        for s in range(count):
            with tarfile.open(root / f"{split}-{s:05d}.tar", "w") as tar:
                for i in range(s * per_shard, (s + 1) * per_shard):
                    png = io.BytesIO()
                    images[i].save(png, "PNG")
                    data = b"not an image" if split == "train" and i == corrupt else png.getvalue()
                    for ext, payload in (("png", data), ("cls", str(labels[i]).encode())):
                        info = tarfile.TarInfo(f"sample{i:05d}.{ext}")
                        info.size = len(payload)
                        tar.addfile(info, io.BytesIO(payload))
    card(root, {split: count * per_shard for split, count in shards.items()}, image="png")
    return root
