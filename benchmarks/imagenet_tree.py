"""An ImageNet-shaped image folder for benchmarks: ``train/`` and ``val/``, 1,000 synset-named class folders.

``--kind small``: every file is the same ~700-byte JPEG (directory scans and indexes: the file count is
what matters). ``--kind photo``: 500×375 photo-like JPEGs at quality 90, each different (decode and
augmentation throughput at 224 px: ImageNet's typical size and quality).

    .venv/bin/python benchmarks/imagenet_tree.py OUT --train-per-class 50 --val-per-class 5 [--kind photo]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path


def synsets(count: int) -> list[str]:
    return [f"n{1440764 + 7919 * i:08d}" for i in range(count)]


def tiny_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 90, 60)).save(out, "JPEG", quality=90)
    return out.getvalue()


def photo_jpeg(rng, width: int = 500, height: int = 375) -> bytes:
    """Smooth colour fields plus noise: compresses (and decodes) like a photograph, not like a flat image."""
    import numpy as np
    from PIL import Image

    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-20, 20, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_tree(root: Path, classes: int = 1000, train_per_class: int = 50, val_per_class: int = 5,
              kind: str = "small", settle_s: float = 2.5) -> Path:
    """Write the tree (skipped if ``root/.complete`` exists), then wait ``settle_s`` so the folder index trusts
    the directories' modification times (deitctl.data.folder.RACY_S)."""
    import numpy as np

    if (root / ".complete").is_file():
        return root
    rng = np.random.default_rng(0)
    small = tiny_jpeg()
    photos = [photo_jpeg(rng) for _ in range(64)] if kind == "photo" else []
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(synsets(classes)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                data = photos[(c * per_class + i) % len(photos)] if photos else small
                with open(folder / f"{name}_{i}.JPEG", "wb") as f:
                    f.write(data)
    (root / ".complete").write_text("")
    time.sleep(settle_s)
    return root


def file_count(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root)) - 1  # minus .complete


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--train-per-class", type=int, default=50)
    p.add_argument("--val-per-class", type=int, default=5)
    p.add_argument("--kind", choices=("small", "photo"), default="small")
    a = p.parse_args()
    start = time.perf_counter()
    make_tree(a.out, a.classes, a.train_per_class, a.val_per_class, a.kind)
    print(f"{a.out}: {file_count(a.out)} files in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
