"""Streaming (--streaming): who reads which shard, exact mid-epoch resume, WebDataset and parquet shards, refusals."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shard_data import CLASSES, write_parquet, write_tars
from test_train import QUAD, assert_same_weights

from deitctl.core.errors import UsageError
from deitctl.data.splits import load_stream
from deitctl.data.streaming import ShardStream, StreamLoader, layout


def number(img) -> torch.Tensor:
    """The sample's number, written into its top-left pixel by shard_data."""
    return torch.tensor(int(np.asarray(img)[0, 0]))


@pytest.fixture(scope="module")
def parquet4(tmp_path_factory) -> Path:
    """4 train shards of 16 (samples 0..63) and 2 test shards of 8."""
    root = tmp_path_factory.mktemp("pq") / "quad"
    write_parquet(root, {"train": 4}, 16)
    write_parquet(root, {"test": 2}, 8)
    return root


def loader(split, rank: int = 0, world: int = 1, workers: int = 2, batch: int = 1, **kw) -> StreamLoader:
    return StreamLoader(ShardStream(split, number, 1, batch, seed=0, rank=rank, world=world, **kw), workers)


def numbers(ld: StreamLoader, epoch: int, count: int | None = None) -> list[int]:
    ld.set_epoch(epoch)
    return [int(n) for x, _ in itertools.islice(ld, count) for n in x.flatten()]


def test_two_processes_with_two_workers_see_every_sample_once_per_epoch(parquet4):
    split = load_stream(str(parquet4), "train")
    assert (split.num_examples, split.num_shards, split.class_names) == (64, 4, CLASSES)
    assert layout(4, 2, 2) == (2, "4 shards, 2 per process")
    orders = []
    for epoch in (0, 1, 2):
        seen = [numbers(loader(split, rank, 2, workers=2, buffer=8), epoch) for rank in (0, 1)]
        assert sorted(seen[0] + seen[1]) == list(range(64)), epoch  # every sample once, none twice
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]  # a new order every epoch


def test_uneven_shards_say_so_and_still_split_the_samples(tmp_path):
    write_parquet(tmp_path / "pq3", {"train": 3}, 10)
    split = load_stream(str(tmp_path / "pq3"), "train")
    used, how = layout(3, 2, 4)
    assert used == 3 and "3 shards do not split over 2 processes" in how and "every 2th sample" in how
    assert "3 loader workers" in how
    seen = [numbers(loader(split, rank, 2, workers=2), 0) for rank in (0, 1)]
    assert sorted(seen[0] + seen[1]) == list(range(30))


def test_repeated_augmentation_streams_consecutive_copies(parquet4):
    split = load_stream(str(parquet4), "train")
    got = numbers(loader(split, workers=0, repeats=3, buffer=8), 0, count=12)
    assert all(len(set(got[i:i + 3])) == 1 for i in range(0, 12, 3)) and len(set(got)) == 4


def test_decode_once_streams_the_images_decoding_each_copy_gives(parquet4):
    from deitctl.config.loader import load_recipe
    from deitctl.data.transforms import train_transform

    split = load_stream(str(parquet4), "train")
    transform = train_transform(load_recipe("fashion-deit-ti", ["img_size=16", "in_chans=1"]))
    batches = []
    for decode_once in (True, False):
        ld = StreamLoader(ShardStream(split, transform, 1, 6, repeats=3, buffer=8, decode_once=decode_once), 0)
        ld.set_epoch(0)
        batches.append([x for x, _ in itertools.islice(ld, 3)])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))
    assert not torch.equal(batches[0][0][0], batches[0][0][1])  # copies of one sample, augmented apiece


@pytest.mark.parametrize(("world", "workers", "buffer", "repeats"), [(1, 2, 8, 1), (2, 2, 5, 3), (1, 0, 7, 1),
                                                                       (1, 3, 8, 2)])
def test_resumed_stream_continues_at_the_exact_sample(parquet4, tmp_path, world, workers, buffer, repeats):
    split = load_stream(str(parquet4), "train")
    for rank in range(world):
        def make(rank: int = rank) -> StreamLoader:
            return loader(split, rank, world, workers, batch=4, buffer=buffer, repeats=repeats)

        whole = numbers(make(), 1)
        for stop in (1, 3, 5):
            first = make()
            head = numbers(first, 1, count=stop)
            torch.save(first.state_dict(), tmp_path / "position.pt")  # as a checkpoint keeps it
            again = make()
            again.load_state_dict(torch.load(tmp_path / "position.pt", weights_only=True))
            again.set_epoch(1, skip=1)
            rest = [int(n) for x, _ in again for n in x.flatten()]
            assert head + rest == whole, (rank, stop)


def test_resume_with_another_layout_is_refused(parquet4):
    split = load_stream(str(parquet4), "train")
    first = loader(split, workers=2)
    numbers(first, 0, count=2)
    with pytest.raises(UsageError, match="2 loader workers and cannot resume with 1 × 1"):
        loader(split, workers=1).load_state_dict(first.state_dict())


STREAM = [*QUAD, "--epochs", "2", "--batch-size", "16", "--streaming", "--set", "num_workers=2",
          "--set", "shuffle_buffer=10", "--set", "repeated_aug=3"]


def test_streamed_run_resumed_mid_epoch_ends_with_the_same_weights(cli, parquet4, tmp_path):
    from deitctl.app.train import TrainRequest, run
    from deitctl.training.plan import RunOptions

    code, _, err = cli("train", "fashion-deit-ti", "--dataset", parquet4, "--out", tmp_path / "straight", *STREAM,
                       "--set", "checkpoint_every=1")
    assert code == 0, err
    assert "streaming" in err and "4 shards, 4 per process" in err and "each sample 3× in a row" in err

    def crash_at_step_3(state, loss):
        if state.global_step == 3:
            raise RuntimeError("simulated crash")
        return loss

    sets = [s for flag, s in itertools.pairwise(STREAM) if flag == "--set"] + ["checkpoint_every=1"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(TrainRequest("fashion-deit-ti", RunOptions(out=tmp_path / "cut", dataset=str(parquet4), epochs=2,
                                                       batch_size=16, sets=sets, streaming=True),
                         on_step=crash_at_step_3))
    assert (tmp_path / "cut" / "checkpoints" / "step-0000003" / "stream-0.pt").is_file()
    code, _, err = cli("train", "fashion-deit-ti", "--resume", tmp_path / "cut")
    assert code == 0, err
    assert_same_weights(tmp_path / "straight", tmp_path / "cut")
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["optimizer_steps"] == 8 and summary["eval"]["num_samples"] == 16


def test_webdataset_shards_stream_with_the_cards_class_names(cli, tmp_path):
    data = write_tars(tmp_path / "wds", {"train": 2, "test": 1}, per_shard=16)
    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", data, "--out", out, *STREAM[:-6], "--epochs", "1",
                       "--streaming")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["label_names"] == CLASSES
    assert json.loads((out / "summary.json").read_text())["eval"]["num_samples"] == 16


def test_corrupt_image_mid_stream_is_named_by_shard_and_key(cli, tmp_path):
    data = write_tars(tmp_path / "wds", {"train": 2, "test": 1}, per_shard=16, corrupt=20)
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", data, "--out", tmp_path / "run", *STREAM[:-6],
                       "--epochs", "1", "--streaming")
    assert code == 1
    assert "train-00001.tar" in err and "sample00020" in err and "remove or replace" in err
    assert "Traceback" not in err


def test_stream_refusals_are_one_line_and_write_nothing(cli, parquet4, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", parquet4, "--out", out, *STREAM,
                       "--max-train-samples", "20")
    assert code == 2 and "--max-train-samples draws a seeded subset" in err and not out.exists()

    odd = tmp_path / "odd"
    write_parquet(odd, {"train": 2}, 8)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(odd / "train-00001-of-00002.parquet")
    pq.write_table(table.append_column("extra", pa.array([1] * len(table))), odd / "train-00001-of-00002.parquet")
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", odd, "--out", out, *STREAM)
    assert code == 2 and "train-00001-of-00002.parquet: columns" in err and "share one schema" in err
    assert not out.exists()

    unlabelled = tmp_path / "unlabelled"
    write_parquet(unlabelled, {"train": 1, "test": 1}, 8)
    for f in unlabelled.glob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["label"]), f)
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", unlabelled, "--out", out, *STREAM)
    assert code == 2 and "label column: cannot infer it" in err and "--label-column" in err and not out.exists()


def test_streaming_from_the_hub_offline_is_one_line(cli, tmp_path):
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", "someone/some-images", "--out", tmp_path / "r",
                       *STREAM)
    assert code == 1 and "cannot be reached" in err and "drop --streaming" in err and not (tmp_path / "r").exists()
