"""DataLoaders: training (sample order from the sampler, augmentation randomness from the sample) and eval.

Each training sample's augmentation is seeded by (seed, epoch, index, copy) — copy: which of repeated
augmentation's copies it is — not by worker id or position in the stream, so a run resumed mid-epoch, or run
with another number of workers or processes, sees exactly the same augmented images as an uninterrupted one. The eval loader is unshuffled and
preprocesses exactly as the model's DataConfig says.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deitctl.core.errors import UsageError
from deitctl.data.samples import collate, with_transform
from deitctl.data.splits import subset
from deitctl.data.transforms import eval_transform
from deitctl.runtime.rng import preserved_rng, seed_all

if TYPE_CHECKING:
    from deitctl.data.splits import LabeledSplit
    from deitctl.models.types import DataConfig


class SeededDataset(Dataset):
    """Wraps a transformed dataset; indexed by ``(epoch, index[, copy])`` keys from :class:`EpochSampler`.

    ``decode_once``: the copies of a sample in one batch (repeated augmentation, one process) are decoded once.
    """

    def __init__(self, dataset: Any, seed: int, decode_once: bool = True) -> None:
        self.dataset, self.seed, self.decode_once = dataset, seed, decode_once

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, ...]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, ...]]) -> list[Any]:
        """A whole batch (torch's DataLoader passes one): rows read from Arrow in one call, each sample then
        augmented under its own seed (copy 0 keeps the (seed, epoch, index) seed runs without repeats always had)."""
        rows = self.dataset.rows([key[1] for key in keys])
        in_worker = torch.utils.data.get_worker_info() is not None  # a worker process: its RNG is ours to set
        decoded: dict[int, Any] | None = {} if self.decode_once else None
        with contextlib.nullcontext() if in_worker else preserved_rng(cuda=False):  # else leave the training RNG
            out = []
            for (epoch, index, *copy), row in zip(keys, rows, strict=True):
                entropy = [self.seed, epoch, index, *(c for c in copy if c)]
                seed_all(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
                out.append(self.dataset.sample(*row, decoded=decoded))
        return out


class EpochSampler(Sampler):
    """Tags the indices of an epoch-aware sampler with the epoch and the copy number (repeated augmentation),
    and can skip a prefix (resume)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler, self.epoch, self.skip = sampler, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) - self.skip

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        copies = self.sampler.copies() if hasattr(self.sampler, "copies") else itertools.repeat(0)
        for index, copy in itertools.islice(zip(self.sampler, copies, strict=False), self.skip, None):  # repeat(0): endless
            yield self.epoch, int(index), int(copy)


def build_train_loader(dataset: Any, sampler: Any, batch_size: int, num_workers: int, seed: int,
                       collate_fn: Any, pin_memory: bool = False, decode_once: bool = True) -> tuple[DataLoader, EpochSampler]:
    epoch_sampler = EpochSampler(sampler)
    loader = DataLoader(
        SeededDataset(dataset, seed, decode_once),
        batch_size=batch_size,
        sampler=epoch_sampler,
        drop_last=True,  # Mixup needs even batches, and every step sees a full batch
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),  # never draw from the training RNG
    )
    return loader, epoch_sampler


def loader_workers(requested: int) -> int:
    """The recipe's loader workers, at most one per core this process may use: more only queue for the same cores
    (and torch warns about it on every loader it starts)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(requested, cores)


class WaitTimer:
    """An iterator that counts the seconds spent waiting for the next batch: a step starved by its
    data loader shows up here (``data_wait_s`` in metrics.jsonl), not as a mysteriously slow model."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self.batches, self.waited_s = batches, 0.0

    def __iter__(self) -> WaitTimer:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.waited_s += time.perf_counter() - start


def build_eval_loader(
    split: LabeledSplit,
    data_config: DataConfig,
    batch_size: int,
    num_workers: int,
    max_samples: int | None = None,
    seed: int = 0,
) -> DataLoader:
    """A deterministic (unshuffled) loader that preprocesses images exactly as ``data_config`` says."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")
    dataset = with_transform(subset(split, max_samples, seed), eval_transform(data_config), data_config.channels)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
