"""Small-image augmentation (≤ 32 px): deitctl's SmallTrain against the same torchvision ops, side by side.

Both compute the authors' small-image pipeline (RandomCrop with 4-px padding, flip, ToTensor, Normalize,
random erasing) and give bit-identical tensors (tests/test_data.py); this times µs per 28-px Fashion-MNIST
image for each, taking turns ``--repeats`` times, and prints the medians and their ratio. On 2 cores the
data worker competes with the training step for CPU, so this cost is paid by the step itself.

    .venv/bin/python benchmarks/bench_small_aug.py [--repeats 7] [--images 2000]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--images", type=int, default=2000)
    args = p.parse_args()

    import torch
    from machine import header, ratio_table
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T

    from deitctl.data.samples import decode_image
    from deitctl.data.splits import load_split, subset
    from deitctl.data.transforms import SmallTrain

    torch.set_num_threads(1)  # what a DataLoader worker uses
    split = subset(load_split("fashion-mnist", "train"), args.images, 0)
    images = [decode_image(v, "L") for v in split.dataset[split.image_column]]
    mean, std = (0.2860,), (0.3530,)
    erasing = RandomErasing(0.25, mode="pixel", device="cpu")
    variants = {
        "torchvision ops": T.Compose([T.Resize(28, interpolation=T.InterpolationMode.BICUBIC),
                                      T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                      T.Normalize(mean, std), erasing]),
        "deitctl SmallTrain": SmallTrain(28, mean, std, None, erasing, pad=4),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, transform in variants.items():
            start = time.perf_counter()
            for img in images:
                transform(img)
            times[name].append((time.perf_counter() - start) / len(images) * 1e6)
    print(header())
    print(ratio_table("augmentation, 28 px, 1 thread", "µs / image", times, lower_is_better=True))

if __name__ == "__main__":
    main()
