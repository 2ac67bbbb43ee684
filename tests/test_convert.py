"""deitctl data convert: shards that hold exactly the source's samples and class names, resumable, checked."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_folder import tree

from deitctl.data import convert as convert_module
from deitctl.data.convert import image_format
from deitctl.data.shards import is_shard_folder


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))
    return tree(tmp_path / "src", {"train": {"cat": 12, "dog": 9, "eel": 7}, "val": {"cat": 3, "dog": 3, "eel": 2}})


def samples(ref: str, split: str, streaming: bool = False) -> Counter:
    """The (image bytes, class name) pairs of a split, as a multiset."""
    from datasets import Image

    from deitctl.data.splits import load_split, load_stream

    s = load_stream(ref, split) if streaming else load_split(ref, split)
    ds = s.dataset.cast_column(s.image_column, Image(decode=False))
    out = Counter()
    for row in ds:
        value = row[s.image_column]
        data = value["bytes"] or Path(value["path"]).read_bytes()
        out[(data, s.class_names[row[s.label_column]])] += 1
    return out


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_shards_hold_the_sources_samples_and_class_names(cli, folder, tmp_path, fmt):
    out = tmp_path / fmt
    code, stdout, err = cli("data", "convert", folder, out, "--format", fmt, "--shard-size", "400", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["splits"]["train"]["rows"] == 28 and result["splits"]["validation"]["rows"] == 8
    assert result["splits"]["train"]["shards"] > 3  # 400-byte shards of ~70-byte PNGs
    ext = ".parquet" if fmt == "parquet" else ".tar"
    assert sorted(p.name for p in out.glob(f"train-*{ext}"))[0] == f"train-00000{ext}"
    for split in ("train", "validation"):
        assert samples(str(out), split, streaming=True) == samples(str(folder), split)
    card = (out / "README.md").read_text()
    assert "cat" in card and "num_examples: 28" in card
    # the training split is stored shuffled (a class-sorted folder would give one-class shards), the rest in order
    from deitctl.data.splits import load_stream

    labels = [row[load_stream(str(out), "train").label_column] for row in load_stream(str(out), "train").dataset]
    assert labels != sorted(labels)
    code, stdout, err = cli("data", "check", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["checked"] == 36


def test_a_killed_conversion_resumes_and_keeps_its_finished_shards(cli, folder, tmp_path, monkeypatch):
    code, _, err = cli("data", "convert", folder, tmp_path / "whole", "--shard-size", "400")
    assert code == 0, err
    real_write, calls = convert_module.ShardWriter.write, []

    def killed_after_two(self, *args):
        if len(calls) == 2:
            raise RuntimeError("killed")  # what a kill leaves: two shards in place, the third never renamed
        calls.append(real_write(self, *args))
        return calls[-1]

    monkeypatch.setattr(convert_module.ShardWriter, "write", killed_after_two)
    with pytest.raises(RuntimeError, match="killed"):
        cli("data", "convert", folder, tmp_path / "cut", "--shard-size", "400")
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cut").glob("*.parquet")}
    assert sorted(kept) == ["train-00000.parquet", "train-00001.parquet"]
    monkeypatch.setattr(convert_module.ShardWriter, "write", real_write)
    code, _, err = cli("data", "convert", folder, tmp_path / "cut", "--shard-size", "400")
    assert code == 0, err
    whole = sorted(p.name for p in (tmp_path / "whole").glob("*.parquet"))
    assert sorted(p.name for p in (tmp_path / "cut").glob("*.parquet")) == whole
    for name in whole:
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert all((tmp_path / "cut" / n).stat().st_mtime_ns == t for n, t in kept.items())  # not written again


def test_convert_refuses_someone_elses_output(cli, folder, tmp_path):
    out = tmp_path / "out"
    assert cli("data", "convert", folder, out, "--shard-size", "400")[0] == 0
    code, _, err = cli("data", "convert", folder, out, "--shard-size", "800")
    assert code == 2 and "holds a conversion of" in err and "choose another OUT" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, _, err = cli("data", "convert", folder, tmp_path / "busy")
    assert code == 2 and "is not an unfinished conversion" in err
    code, _, err = cli("data", "convert", folder, tmp_path / "x", "--shard-size", "lots")
    assert code == 2 and "--shard-size lots" in err and not (tmp_path / "x").exists()


def test_image_formats_are_told_by_their_bytes():
    assert image_format(b"\xff\xd8\xff\xe0rest") == "jpg"
    assert image_format(b"\x89PNG\r\n\x1a\nrest") == "png"
    assert image_format(b"P5\n28 28\n255\n") == "pgm"
    assert image_format(b"RIFF1234WEBPVP8 ") == "webp"
    assert image_format(b"not an image") is None


def test_shards_are_told_from_image_folders(cli, folder, tmp_path):
    assert not is_shard_folder(folder)
    assert cli("data", "convert", folder, tmp_path / "pq", "--shard-size", "400")[0] == 0
    assert is_shard_folder(tmp_path / "pq") and is_shard_folder(tmp_path / "pq" / "train-00000.parquet")


def test_data_show_reads_shards_as_a_stream(cli, folder, tmp_path, monkeypatch):
    import datasets

    assert cli("data", "convert", folder, tmp_path / "wds", "--format", "webdataset", "--shard-size", "400")[0] == 0
    real = datasets.load_dataset

    def streamed_only(*args, **kwargs):
        assert kwargs.get("streaming"), "shards copied into the datasets cache"
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", streamed_only)
    code, out, err = cli("data", "show", tmp_path / "wds", "--json", "--grid", tmp_path / "grid.png")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["splits"] == {"train": 28, "validation": 8} and summary["class_names"] == ["cat", "dog", "eel"]
    assert summary["first_image"] == {"width": 8, "height": 8, "mode": "RGB"}
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
