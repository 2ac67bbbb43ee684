"""RepeatAugSampler: deterministic per (seed, epoch), disjoint across ranks, repeats even in one process."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from deitctl.data.sampler import RepeatAugSampler


def epoch_lists(n: int, world: int, epoch: int = 0, **kw) -> list[list[int]]:
    """What every rank of a ``world``-process run yields in ``epoch``."""
    out = []
    for rank in range(world):
        s = RepeatAugSampler(n, num_replicas=world, rank=rank, **kw)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


def test_same_seed_and_epoch_give_the_same_order_and_others_differ():
    first = epoch_lists(50, 2, epoch=3, seed=7)
    assert first == epoch_lists(50, 2, epoch=3, seed=7)
    assert first != epoch_lists(50, 2, epoch=4, seed=7)
    assert first != epoch_lists(50, 2, epoch=3, seed=8)
    # (seed, epoch) is not folded into seed + epoch
    assert epoch_lists(50, 1, epoch=1, seed=0) != epoch_lists(50, 1, epoch=0, seed=1)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [10, 31])
def test_full_epoch_ranks_are_disjoint_and_cover_the_padded_repeated_list(world, n):
    ranks = epoch_lists(n, world, epoch=1, repeats=3, epoch_len="full", seed=5)
    sampler = RepeatAugSampler(n, world, 0, repeats=3, epoch_len="full", seed=5)
    sampler.set_epoch(1)
    order = sampler.global_order().tolist()

    assert len(order) == math.ceil(3 * n / world) * world
    assert {len(r) for r in ranks} == {len(order) // world} == {len(sampler)}
    # dealing position k to rank k % world: every position of the padded list exactly once
    assert [ranks[k % world][k // world] for k in range(len(order))] == order
    counts = Counter(i for r in ranks for i in r)
    assert set(counts) == set(range(n))
    padding = len(order) - 3 * n
    assert sum(counts.values()) == 3 * n + padding and all(3 <= c <= 3 + padding for c in counts.values())


@pytest.mark.parametrize("world", [1, 2, 3])
def test_nominal_epoch_has_the_length_of_a_plain_epoch(world):
    n = 31
    ranks = epoch_lists(n, world, repeats=3, seed=1)
    full = RepeatAugSampler(n, world, 0, repeats=3, seed=1, epoch_len="full").global_order().tolist()
    per_rank = math.ceil(n / world)
    assert [len(r) for r in ranks] == [per_rank] * world
    assert [ranks[k % world][k // world] for k in range(per_rank * world)] == full[: per_rank * world]
    # about n / 3 distinct images per epoch; the copies sit next to each other
    assert math.ceil(n / 3) <= len({i for r in ranks for i in r}) <= math.ceil(n / 3) + 1


def test_one_process_still_repeats_consecutively():
    order = epoch_lists(12, 1, repeats=3, epoch_len="full", seed=2)[0]
    triples = [order[i : i + 3] for i in range(0, len(order), 3)]
    assert all(len(set(t)) == 1 for t in triples)
    assert sorted(t[0] for t in triples) == list(range(12))


def test_copies_land_in_the_same_step_on_different_ranks():
    ranks = epoch_lists(20, 3, repeats=3, epoch_len="full", seed=0)
    assert all(ranks[0][j] == ranks[1][j] == ranks[2][j] for j in range(20))


@pytest.mark.parametrize("repeats", [0, 1])
def test_without_repeats_it_is_a_seeded_shuffle_sharded_across_ranks(repeats):
    one = epoch_lists(10, 1, repeats=repeats, seed=3)[0]
    assert sorted(one) == list(range(10)) and one != list(range(10))
    three = epoch_lists(10, 3, repeats=repeats, seed=3)
    assert [len(r) for r in three] == [4, 4, 4]
    flat = [three[k % 3][k // 3] for k in range(12)]
    assert flat == one + one[:2]  # padded by wrapping around, like DistributedSampler


def test_no_shuffle_is_deterministic_and_ignores_the_epoch():
    a = epoch_lists(4, 1, epoch=0, repeats=2, shuffle=False, epoch_len="full")
    b = epoch_lists(4, 1, epoch=9, repeats=2, shuffle=False, epoch_len="full")
    assert a == b == [[0, 0, 1, 1, 2, 2, 3, 3]]


def test_tiny_and_empty_datasets():
    assert [len(r) for r in epoch_lists(1, 3, repeats=1)] == [1, 1, 1]
    assert epoch_lists(0, 2) == [[], []]


@pytest.mark.parametrize("kw", [{"rank": 2, "num_replicas": 2}, {"num_replicas": 0}, {"repeats": -1},
                                {"epoch_len": "short"}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        RepeatAugSampler(10, **kw)


def test_drives_a_dataloader():
    from torch.utils.data import DataLoader

    sampler = RepeatAugSampler(12, repeats=3, seed=0)
    batches = list(DataLoader(list(range(100, 112)), batch_size=6, sampler=sampler))
    assert len(batches) == 2 and all(len(b) == 6 for b in batches)
    assert batches[0][0] == batches[0][1] == batches[0][2]


@pytest.mark.parametrize(("world", "n", "epoch_len"), [(1, 7, "nominal"), (2, 7, "full"), (3, 5, "full"), (4, 3, "full")])
def test_every_copy_of_a_repeated_sample_has_its_own_number(world, n, epoch_len):
    """(index, copy) pairs never repeat within an epoch, across all ranks, padding included: each copy gets its own
    augmentation seed."""
    pairs = []
    for rank in range(world):
        sampler = RepeatAugSampler(n, world, rank, repeats=3, epoch_len=epoch_len, seed=2)
        copies = sampler.copies()
        assert len(copies) == len(sampler)
        pairs += list(zip(sampler, copies, strict=True))
    assert len(set(pairs)) == len(pairs)
    assert {c for _, c in pairs} >= {0, 1, 2}
