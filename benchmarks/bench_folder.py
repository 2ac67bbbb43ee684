"""Opening an ImageNet-shaped image folder: deitctl's first open and re-open against torchvision's ImageFolder scan.

Generates (once, kept under --root) 1,000 class folders with ``train/`` and ``val/`` of small JPEGs — the file
count is what matters here — then, per repeat and interleaved: torchvision's ``ImageFolder`` on train and val
(the scan, no decoding), deitctl's first open (its index removed first: one directory pass, the index written)
and its re-open (the index read), each as ``data.sources.open_dataset`` + ``splits.label_split`` of both splits,
which is what ``deitctl train`` and ``deitctl data show`` do. Targets (issue 25): first open ≤ 3 × torchvision + 2 s,
re-open ≤ 2 s. ``--datasets-builder`` also times ``datasets``' own ``imagefolder`` builder once (what deitctl used
before: minutes).

    .venv/bin/python benchmarks/bench_folder.py --files 55000 [--repeats 5] [--root /tmp/deitctl-tree]
    .venv/bin/python benchmarks/bench_folder.py --files 330000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=55000, help="total images; 10/11 in train/, 1/11 in val/")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "deitctl-trees")
    p.add_argument("--datasets-builder", action="store_true", help="also time datasets' imagefolder builder once")
    args = p.parse_args()
    os.environ["DEITCTL_CACHE"] = tempfile.mkdtemp(prefix="deitctl-bench-cache-")
    os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(os.environ["DEITCTL_CACHE"], "hf"))

    from imagenet_tree import file_count, make_tree
    from machine import header

    per_class = args.files // 1000
    root = make_tree(args.root / f"tree-{args.files}", 1000, per_class * 10 // 11, per_class - per_class * 10 // 11)
    print(header())
    print(f"tree: {root}, {file_count(root)} files, 1,000 classes, train/ and val/")

    import torchvision

    from deitctl.data import folder, sources, splits

    def tv() -> None:
        for split in ("train", "val"):
            torchvision.datasets.ImageFolder(str(root / split))

    def deitctl_open() -> None:
        opened = sources.open_dataset(str(root))
        for split in opened.splits:
            splits.label_split(opened, split)

    def first_open() -> None:
        shutil.rmtree(folder.index_dir(root), ignore_errors=True)
        deitctl_open()

    times: dict[str, list[float]] = {"torchvision ImageFolder (train + val)": [], "deitctl first open": [],
                                     "deitctl re-open": []}
    for _ in range(args.repeats):
        for name, fn in zip(times, (tv, first_open, deitctl_open), strict=True):
            times[name].append(timed(fn))
    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["torchvision ImageFolder (train + val)"]
    print(f"\n| step, {file_count(root):,} files | seconds (median of {args.repeats}) | vs torchvision |")
    print("|---|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m:.3f} | {m / base:.2f}× |")
    first, again = med["deitctl first open"], med["deitctl re-open"]
    print(f"\ntargets: first open {first:.2f} s ≤ 3 × {base:.2f} + 2 = {3 * base + 2:.2f} s: "
          f"{'met' if first <= 3 * base + 2 else 'MISSED'}; re-open {again:.2f} s ≤ 2 s: "
          f"{'met' if again <= 2 else 'MISSED'}")
    if args.datasets_builder:
        import datasets

        datasets.disable_progress_bars()
        seconds = timed(lambda: datasets.load_dataset("imagefolder", data_dir=str(root)))
        print(f"datasets' imagefolder builder (what deitctl used before), once: {seconds:.1f} s "
              f"({seconds / first:.0f}× deitctl's first open)")
    shutil.rmtree(os.environ["DEITCTL_CACHE"], ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
