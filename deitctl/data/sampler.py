"""Repeated augmentation (Hoffer et al. 2020; DeiT Table 9: 3 repeats) for one process or many.

Each epoch draws one permutation of the ``N`` sample indices, repeats every index ``repeats`` times
*consecutively*, pads the list (wrapping around) to a multiple of the world size ``W``, and deals
it out like cards: position ``k`` goes to rank ``k % W``. The copies of an image therefore land in the
same global batch — on different processes when ``W > 1``, side by side in one batch when ``W == 1`` —
and each gets its own random augmentation. No position is dealt twice, so ranks never overlap.

Epoch length (``epoch_len``):

* ``"nominal"`` (default): every rank yields ``ceil(N / W)`` indices — the first ``ceil(N / W) · W``
  positions of the repeated list. An epoch has as many steps as without repetition (so schedules,
  checkpoints and ``--epochs`` mean the same thing), and sees about ``N / repeats`` distinct images;
  a fresh permutation each epoch brings the others in. The authors keep ``floor(N // 256 · 256 / W)``
  per process instead: the same idea, but they drop up to 255 samples per epoch to round to their
  batch size, and yield nothing at all for ``N < 256``; we drop nothing and let the DataLoader's
  ``drop_last`` decide about a partial batch.
* ``"full"``: every rank yields ``ceil(N · repeats / W)`` indices, the whole padded repeated list;
  an epoch is ``repeats`` times longer and sees every image ``repeats`` times.

With ``repeats`` 0 or 1 this is a plain seeded shuffle sharded across ranks (like torch's
``DistributedSampler``, padded the same way), so the trainer can use it for every run and a resumed
run reproduces the sample order: the order depends only on ``(seed, epoch, N, W, rank)``.
Unlike the authors' sampler (and timm's, which asserts when not distributed), a single process
still repeats.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

EPOCH_LENGTHS = ("nominal", "full")


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from (seed, epoch); unlike ``seed + epoch``, (0, 1) and (1, 0) differ."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RepeatAugSampler(Sampler[int]):
    """Indices for ONE process (``rank`` of ``num_replicas``); call ``set_epoch`` before each epoch."""

    def __init__(
        self,
        num_samples: int,
        num_replicas: int = 1,
        rank: int = 0,
        repeats: int = 3,
        seed: int = 0,
        shuffle: bool = True,
        epoch_len: str = "nominal",
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank {rank} of {num_replicas}")
        if repeats < 0:
            raise ValueError(f"repeats must be >= 0, got {repeats}")
        if epoch_len not in EPOCH_LENGTHS:
            raise ValueError(f"epoch_len must be one of {EPOCH_LENGTHS}, got {epoch_len!r}")
        self.num_samples = num_samples
        self.num_replicas = num_replicas
        self.rank = rank
        self.repeats = max(1, repeats)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch_len = epoch_len
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        total = self.num_samples * (self.repeats if self.epoch_len == "full" else 1)
        return math.ceil(total / self.num_replicas)

    def global_order(self) -> torch.Tensor:
        """This epoch's padded repeated list, over all ranks: rank ``r`` yields ``[r::W]`` of it."""
        n = self.num_samples
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        repeated = order.repeat_interleave(self.repeats)
        wanted = len(self) * self.num_replicas
        if n == 0 or wanted <= len(repeated):
            return repeated[:wanted]
        return repeated[torch.arange(wanted) % len(repeated)]  # wrap around to pad

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank :: self.num_replicas].tolist())

    def copies(self) -> list[int]:
        """Which copy of its sample each index of ``__iter__`` is — 0, 1, 2 for 3 repeats, counting on through the
        padding — so that every copy gets its own augmentation (a seed per (epoch, index) alone would give the
        copies the same one, and repeated augmentation would repeat images, not augmentations)."""
        repeated = self.num_samples * self.repeats
        if repeated == 0:
            return []
        positions = torch.arange(len(self) * self.num_replicas)[self.rank :: self.num_replicas]
        return ((positions // repeated) * self.repeats + (positions % repeated) % self.repeats).tolist()
