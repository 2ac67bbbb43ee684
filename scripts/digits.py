"""scikit-learn's handwritten digits (1,797 real 8×8 scans, shipped inside the package: offline) as a dataset deitctl
opens: a ``save_to_disk`` folder with a ``train`` and a ``test`` split (a stratified, seeded 80/20 split), 8-bit
grayscale images and the class names "0"…"9".

    .venv/bin/python scripts/digits.py OUT [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build(out: Path, seed: int = 0) -> Path:
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 grey levels → 0..255
    train, test = train_test_split(np.arange(len(pixels)), test_size=0.2, stratify=digits.target, random_state=seed)
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    splits = {name: Dataset.from_dict({"image": [PILImage.fromarray(pixels[i], "L") for i in idx],
                                       "label": [int(digits.target[i]) for i in idx]}, features=features)
              for name, idx in (("train", train), ("test", test))}
    DatasetDict(splits).save_to_disk(str(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0, help="the train/test split")
    a = p.parse_args()
    import datasets

    datasets.disable_progress_bars()
    build(a.out, a.seed)
    print(f"{a.out}: scikit-learn digits, 1,437 train / 360 test, 10 classes")


if __name__ == "__main__":
    main()
