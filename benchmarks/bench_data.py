"""Throughput of the training input pipeline: deitctl's vs the same one built with plain timm.

Measures images/second per DataLoader worker of decode + augment + collate (everything a worker
does), on Fashion-MNIST (the Debian IDX files) and on a folder of generated ~256 px JPEGs fed at
224 px with the DeiT recipe. Each row is the median of ``--repeats`` timed passes over ``--batches``
batches; the first batch of each pass (worker start, prefetch) is not timed.

Columns: ``ours`` = ``data.load_split`` + ``samples.with_transform`` + ``transforms.train_transform``;
``timm`` = ``timm.data.create_dataset`` + ``create_loader(use_prefetcher=False)`` with the recipe's
augmentation arguments; ``timm+our tf`` = timm's dataset and loader with our transform swapped in,
which isolates the data layer when the transforms differ (at ≤ 32 px we follow the authors' small-image
path, RandomCrop(padding 4), where timm uses RandomResizedCrop + colour jitter). timm's RandAugment
gets our 0-bit Posterize fix (``transforms._pillow_safe``); without it, it crashes on Pillow 13.

    .venv/bin/python benchmarks/bench_data.py [--repeats 5] [--batches 20] [--workers 1] [--only jpeg]

``--only imagenet``: an ImageNet-shaped folder (1,000 class folders of 500×375 JPEGs at quality 90) with the
DeiT-B recipe's augmentation (RandomResizedCrop 224 + flip + RandAugment 9/0.5 + random erasing 0.25): img/s per
worker of decoding alone (the ceiling), timm's ``create_loader``, deitctl's folder path (the training loader: the
folder index, repeated augmentation's sampler, per-sample seeds) and its streamed path (the same files converted
to parquet shards by ``deitctl data convert``), each with and without ``decode_once`` (the recipe's 3 repeated
copies of a sample decoded once), interleaved, medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="deitctl-bench-"))
os.environ.setdefault("HF_DATASETS_CACHE", str(TMP / "hf-cache"))  # keep the imagefolder cache out of ~/.cache
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed passes per row (median reported)")
    p.add_argument("--batches", type=int, default=20, help="timed batches per pass (at most one epoch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (results are per worker)")
    p.add_argument("--jpegs", type=int, default=512, help="JPEG files to generate")
    p.add_argument("--jpeg-size", type=int, default=256, help="approximate JPEG side in pixels")
    p.add_argument("--only", choices=("fashion", "jpeg", "imagenet"), help="run one case only")
    p.add_argument("--imagenet-classes", type=int, default=1000, help="imagenet case: class folders")
    p.add_argument("--imagenet-per-class", type=int, default=2, help="imagenet case: 500×375 JPEGs per class")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------- data
def fashion_for_torchvision() -> Path:
    """torchvision's FashionMNIST wants the IDX files un-gzipped under ROOT/FashionMNIST/raw."""
    from deitctl.data.fashion_mnist import IDX_DIR

    raw = TMP / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in IDX_DIR.glob("*-ubyte.gz"):
        with gzip.open(gz, "rb") as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return raw.parent.parent


def jpeg_folder(count: int, side: int) -> Path:
    """``count`` photo-like JPEGs (smooth colour fields plus noise, sides ~``side`` px) in 4 classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = TMP / "jpegs"
    for i in range(count):
        folder = root / "train" / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (int(side * f) for f in rng.uniform(0.85, 1.2, 2))
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 12, (h, w, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=90)
    return root


# ------------------------------------------------------------------------------------ loaders
def our_loader(ref: str, recipe, args: argparse.Namespace):
    from torch.utils.data import DataLoader

    from deitctl.data import samples, splits
    from deitctl.data.transforms import train_transform

    split = splits.load_split(ref, "train")
    dataset = samples.with_transform(split, train_transform(recipe), recipe.in_chans)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                      persistent_workers=args.workers > 0, collate_fn=samples.collate)


def timm_loader(name: str, root: Path, recipe, args: argparse.Namespace, transform: Callable | None = None):
    from timm.data import create_dataset, create_loader

    from deitctl.data.transforms import channel_stats, pillow_safe

    dataset = create_dataset(name, root=str(root), split="train", is_training=True, download=False)
    loader = create_loader(
        dataset, input_size=(recipe.in_chans, recipe.img_size, recipe.img_size), batch_size=args.batch_size,
        is_training=True, use_prefetcher=False, num_workers=args.workers, persistent_workers=args.workers > 0,
        auto_augment=recipe.rand_augment, color_jitter=None if recipe.rand_augment else 0.3,
        interpolation=recipe.train_interpolation, re_prob=recipe.reprob, re_mode=recipe.remode,
        re_count=recipe.recount, mean=channel_stats(recipe.mean, recipe.in_chans), std=channel_stats(recipe.std, recipe.in_chans),
    )
    # plain timm + Pillow 13 crashes on 0-bit Posterize: same fix as ours, same cost
    loader.dataset.transform = transform or pillow_safe(loader.dataset.transform)
    return loader


def images_per_second(loader, args: argparse.Namespace) -> float:
    """Median over repeats of images/s per worker; the first batch of each pass is not timed."""
    batches = min(args.batches, len(loader) - 1)
    return statistics.median(one_pass(loader, batches) for _ in range(args.repeats)) / max(1, args.workers)


def bench_rows(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    from deitctl.config.loader import load_recipe
    from deitctl.data.fashion_mnist import idx_available
    from deitctl.data.transforms import train_transform

    cases = []
    if args.only in (None, "fashion") and idx_available():
        cases.append(("fashion-mnist 28 px", "fashion-mnist", "torch/fashion_mnist", fashion_for_torchvision,
                      load_recipe("fashion-deit-ti")))
    if args.only in (None, "jpeg"):
        cases.append((f"{args.jpegs} JPEGs → 224 px", None, "", lambda: jpeg_folder(args.jpegs, args.jpeg_size),
                      load_recipe("deit-ti")))
    rows = []
    for label, ref, timm_name, make_root, recipe in cases:
        root = make_root()
        ours = images_per_second(our_loader(ref or str(root / "train"), recipe, args), args)
        timm_own = images_per_second(timm_loader(timm_name, root, recipe, args), args)
        timm_ours = images_per_second(timm_loader(timm_name, root, recipe, args, train_transform(recipe)), args)
        rows.append((label, ours, timm_own, timm_ours))
        print(f"  done: {label}", file=sys.stderr)
    return rows


# ------------------------------------------------------------------- ImageNet-like, 224 px
class DecodeOnly:
    """Read + decode each file to RGB, nothing else: the ceiling of any pipeline on these files."""

    def __init__(self, files: list[str]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        import torch
        from PIL import Image

        with Image.open(self.files[index]) as img:
            img.convert("RGB").load()
        return torch.zeros(1), 0


def imagenet_loaders(args: argparse.Namespace) -> dict[str, object]:
    """The same 500×375 q90 JPEGs (ImageNet-shaped folder) through each pipeline, with the DeiT-B augmentation."""
    from imagenet_tree import make_tree
    from torch.utils.data import DataLoader

    from deitctl.app.convert import ConvertRequest, convert
    from deitctl.config.loader import load_recipe
    from deitctl.data.loaders import build_train_loader
    from deitctl.data.sampler import RepeatAugSampler
    from deitctl.data.samples import collate, with_transform
    from deitctl.data.splits import load_split, load_stream
    from deitctl.data.streaming import ShardStream, StreamLoader
    from deitctl.data.transforms import train_transform

    recipe = load_recipe("deit-b")  # RandomResizedCrop 224 bicubic + flip + RandAugment 9/0.5 + erasing 0.25
    root = make_tree(TMP / "imagenet", args.imagenet_classes, args.imagenet_per_class, 1, kind="photo")
    split = load_split(str(root), "train")
    files = [v["path"] for v in split.dataset[split.image_column]]
    convert(ConvertRequest(str(root), TMP / "imagenet-pq", "parquet", "64MB", split="train"))
    stream = load_stream(str(TMP / "imagenet-pq"), "train")

    def folder(decode_once: bool):
        return build_train_loader(with_transform(split, train_transform(recipe), 3),
                                  RepeatAugSampler(len(split), repeats=recipe.repeated_aug, seed=0),
                                  args.batch_size, args.workers, 0, collate, decode_once=decode_once)[0]

    def streamed(decode_once: bool):
        loader = StreamLoader(ShardStream(stream, train_transform(recipe), 3, args.batch_size, buffer=1000,
                                          repeats=recipe.repeated_aug, decode_once=decode_once),
                              min(args.workers, stream.num_shards))
        loader.set_epoch(0)
        return loader

    return {
        "decode only (ceiling)": DataLoader(DecodeOnly(files), batch_size=args.batch_size, shuffle=True,
                                            num_workers=args.workers, persistent_workers=args.workers > 0),
        "timm create_loader": timm_loader("", root, recipe, args),
        "deitctl folder": folder(True),
        "deitctl folder, decode_once off": folder(False),
        "deitctl streamed (parquet)": streamed(True),
        "deitctl streamed, decode_once off": streamed(False),
    }


def one_pass(loader, batches: int) -> float:
    """Images per second over ``batches`` batches, the first batch (worker start, prefetch) not timed."""
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(it)
        seen += len(images)
    rate = seen / (time.perf_counter() - start)
    del it
    return rate


def bench_imagenet(args: argparse.Namespace) -> None:
    from machine import ratio_table

    loaders = imagenet_loaders(args)
    print(f"  {args.imagenet_classes * args.imagenet_per_class} JPEGs 500×375 q90 ready", file=sys.stderr)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(args.repeats):  # interleaved: each repeat runs every pipeline once
        for name, loader in loaders.items():
            rates[name].append(one_pass(loader, args.batches) / max(1, args.workers))
    print(ratio_table(f"ImageNet-like, DeiT-B augmentation, batch {args.batch_size}, workers {args.workers}",
                      "img/s per worker", rates))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from machine import header

    print(header())
    import torch

    torch.set_num_threads(1)  # what DataLoader workers use; matters for --workers 0
    import datasets

    datasets.disable_progress_bars()
    try:
        if args.only == "imagenet":
            bench_imagenet(args)
            return
        rows = bench_rows(args)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"img/s per worker (workers={args.workers}, batch {args.batch_size}, {args.batches} batches, "
          f"median of {args.repeats})")
    header = f"{'pipeline':<24}{'ours':>9}{'timm':>9}{'timm+our tf':>13}{'ours/timm':>11}{'ours/(timm+our tf)':>20}"
    print(header + "\n" + "-" * len(header))
    for label, ours, timm_own, timm_ours in rows:
        print(f"{label:<24}{ours:>9.0f}{timm_own:>9.0f}{timm_ours:>13.0f}{ours / timm_own:>11.2f}"
              f"{ours / timm_ours:>20.2f}")


if __name__ == "__main__":
    main()
