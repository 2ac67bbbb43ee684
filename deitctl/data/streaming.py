"""Training and evaluating on a stream: each process and loader worker reads its own shards, and a run
stopped mid-epoch resumes at the exact sample.

Who reads what: ``datasets.distributed.split_dataset_by_node`` gives each process its shards (when the
shard count is a multiple of the processes; otherwise every process reads every shard and keeps every
``world``-th sample), and ``datasets`` deals a process's shards out to its loader workers. The shard order
is permuted per epoch by ``IterableDataset.set_epoch`` with a number drawn from (seed, epoch), the same on
every process, as ``split_dataset_by_node`` requires. Not ``IterableDataset.shuffle``: its example buffer is
lost on resume, and (datasets 5.2) a shuffled multi-shard stream cannot restore a position inside a worker.

Sample order within a worker: a *block* shuffle. The worker reads ``buffer`` rows (undecoded bytes), permutes
them with a generator seeded by (seed, epoch, rank, worker, block), yields them — each ``repeats`` times in a
row, the streamed form of repeated augmentation — and reads the next block. Unlike a sliding shuffle buffer
(``IterableDataset.shuffle``, whose content is lost on resume), a block is replayed exactly from the stream
position where it began (``IterableDataset.state_dict``), so a worker's position is (block start, block
number, offset): resuming re-reads at most one block's bytes and decodes nothing twice.

Batches are formed in the worker and carry the worker's position after their last sample; the main process
keeps the latest position of each worker. torch's DataLoader takes batches from its workers in turn, so
on resume the workers before the one whose turn it was yield a marker first, which the main process
drops: the batches come in the same order as in the uninterrupted run. Each sample's augmentation is seeded
by (seed, epoch, rank, worker, its number in the worker's stream).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from deitctl.core.errors import UsageError
from deitctl.data.sampler import epoch_seed
from deitctl.data.samples import collate, decode_image
from deitctl.runtime.rng import preserved_rng, seed_all

if TYPE_CHECKING:
    from deitctl.data.splits import StreamSplit

_MARKER = "resume-turn"  # what a worker yields first when it is not its turn after a resume


def layout(num_shards: int, world: int, workers: int) -> tuple[int, str]:
    """(loader workers that will have shards to read, a sentence saying who reads what)."""
    if num_shards % world == 0:
        per_process = num_shards // world
        how = f"{num_shards} shards, {per_process} per process"
    else:
        per_process = num_shards
        how = (f"{num_shards} shards do not split over {world} processes, so every process reads all of them and keeps "
               f"every {world}th sample ({world}× the reading; use a multiple of {world} shards)")
    used = min(workers, per_process)
    if used < workers:
        how += f"; {used} loader workers (one per shard, not {workers})"
    return used, how


class ShardStream(IterableDataset):
    """What one loader worker (or the main process, with no workers) runs: read, shuffle, decode, augment, batch."""

    def __init__(self, split: StreamSplit, transform: Callable, channels: int, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1, shuffle: bool = True, buffer: int = 1000, repeats: int = 1,
                 drop_last: bool = True, decode_once: bool = True) -> None:
        self.base = split.dataset  # image + label (+ a WebDataset's shard and key, to name a sample)
        self.image, self.label = split.image_column, split.label_column
        self.keys = [c for c in ("__url__", "__key__") if c in (split.dataset.features or {})]
        self.where = f"{split.name}[{split.split}]"
        self.transform, self.mode, self.batch_size = transform, "L" if channels == 1 else "RGB", batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.shuffle, self.buffer, self.repeats, self.drop_last = shuffle, buffer if shuffle else 1, max(1, repeats), drop_last
        self.epoch, self.resume, self.decode_once = 0, None, decode_once

    def epoch_stream(self) -> Any:
        """This process's part of the stream for this epoch (shard order shuffled by seed and epoch)."""
        from datasets.distributed import split_dataset_by_node

        ds = copy.deepcopy(self.base)  # an iteration keeps its position in the object: never share one
        if self.shuffle:  # datasets permutes the shards by the epoch it is given (no example buffer: see above)
            ds.set_epoch(epoch_seed(self.seed, self.epoch))
        return split_dataset_by_node(ds, self.rank, self.world) if self.world > 1 else ds

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        resume = self.resume or {}
        if resume and worker < resume["next"]:
            yield _MARKER
        position = resume.get("workers", {}).get(worker, {})
        ds = self.epoch_stream()
        start = position.get("stream")
        if start is not None:
            ds.load_state_dict(start)
        block, skip, produced = position.get("block", 0), position.get("offset", 0), position.get("produced", 0)
        rows, samples = iter(ds), []
        while chunk := list(itertools.islice(rows, self.buffer)):
            order = np.random.default_rng([self.seed, self.epoch, self.rank, worker, block]).permutation(len(chunk)) \
                if self.shuffle else range(len(chunk))
            sequence = [chunk[i] for i in order for _ in range(self.repeats)]
            for offset in range(skip, len(sequence)):
                samples.append(self.sample(sequence[offset], (self.seed, self.epoch, self.rank, worker, produced),
                                           reuse=offset > skip and sequence[offset] is sequence[offset - 1]))
                produced += 1
                if len(samples) == self.batch_size:
                    yield (*collate(samples), {"worker": worker, "stream": start, "block": block, "offset": offset + 1,
                                               "produced": produced})
                    samples = []
            block, skip, start = block + 1, 0, ds.state_dict()
        if samples and not self.drop_last:
            yield (*collate(samples), {"worker": worker, "stream": start, "block": block, "offset": 0, "produced": produced})

    def sample(self, row: dict[str, Any], key: tuple[int, ...], reuse: bool = False) -> dict[str, Any]:
        """Decode and transform one row, its randomness seeded by ``key`` (training only). ``reuse``: the row is a
        repeated-augmentation copy of the previous one, whose decoded image serves again (with ``decode_once``)."""
        if not (reuse and self.decode_once):
            where = " ".join(f"{k.strip('_')} {row[k]}" for k in self.keys) or self.where
            self.last_image = decode_image(row[self.image], self.mode, None if self.keys else key[-1], where)
        if not self.shuffle:
            return {"x": self.transform(self.last_image), "y": int(row[self.label])}
        # in the main process (no workers), leave the training RNG as it was
        with contextlib.nullcontext() if get_worker_info() is not None else preserved_rng(cuda=False):
            seed_all(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
            return {"x": self.transform(self.last_image), "y": int(row[self.label])}


class StreamLoader:
    """The main process's side: a DataLoader over a :class:`ShardStream`, the workers' positions, and (several
    processes) an agreement to end the epoch together when any process runs out of data."""

    sharded = True  # each process sees only its part: metrics are summed across processes, not gathered

    def __init__(self, stream: ShardStream, num_workers: int, pin_memory: bool = False,
                 all_have: Callable[[bool], bool] | None = None) -> None:
        self.stream, self.num_workers, self.pin_memory, self.all_have = stream, num_workers, pin_memory, all_have
        self.positions: dict[int, dict[str, Any]] = {}
        self.next, self.pending = 0, None

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start ``epoch``; ``skip`` > 0 (resuming mid-epoch) continues from the restored positions."""
        resume = self.pending if skip else None
        self.pending = None
        if skip and (resume is None or resume["epoch"] != epoch):
            raise UsageError("this checkpoint holds no stream position for the epoch it stopped in; resume from "
                             "an earlier checkpoint, or start again with --overwrite")
        self.stream.epoch, self.stream.resume = epoch, resume
        self.positions = dict(resume["workers"]) if resume else {}
        self.next = resume["next"] if resume else 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.stream.epoch, "workers": dict(self.positions), "next": self.next,
                "layout": [self.stream.world, self.num_workers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved, now = state["layout"], [self.stream.world, self.num_workers]
        if saved != now:
            raise UsageError(f"this run streams its data with {saved[0]} processes × {saved[1]} loader workers and "
                             f"cannot resume with {now[0]} × {now[1]}: the stream position belongs to that layout; "
                             "launch it as before (same processes, same --set num_workers)")
        self.pending = state

    def __len__(self) -> int:
        raise TypeError("a stream has no length")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                            prefetch_factor=4 if self.num_workers else None)
        batches = iter(loader)
        while True:
            item = next(batches, None)
            while item == _MARKER:
                item = next(batches, None)
            if self.all_have is not None and not self.all_have(item is not None):
                return  # another process has run out: every process ends the epoch at the same step
            if item is None:
                return
            images, labels, position = item
            self.positions[position["worker"]] = position
            self.next = (position["worker"] + 1) % max(1, self.num_workers)
            yield images, labels
