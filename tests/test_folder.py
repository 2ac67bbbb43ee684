"""Image folders: one directory pass, an index that is re-read while the tree is unchanged and never after it
changed, the layout rules, and bad trees refused in one line with nothing written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from deitctl.core.errors import UsageError
from deitctl.data import folder, sources, splits


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))


def tree(root: Path, layout: dict[str, dict[str, int]], age_s: float = 60) -> Path:
    """``{split or ".": {class: count}}`` of 8-px PNGs; every directory's mtime set ``age_s`` into the past
    (older than the index's racy window), as a tree copied in a while ago has."""
    for split, classes in layout.items():
        for name, count in classes.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(d / f"{name}-{i}.png")
    age(root, age_s)
    return root


def age(root: Path, seconds: float = 60) -> None:
    past = time.time() - seconds
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(d, (past, past))


def sizes(opened) -> dict[str, int]:
    return {name: len(ds) for name, ds in opened.splits.items()}


def test_split_folders_classes_and_images_decoded_by_datasets(tmp_path):
    root = tree(tmp_path / "imnet", {"train": {"n02": 3, "n01": 2}, "val": {"n01": 1, "n02": 1}})
    (root / "README.txt").write_text("ignored, as by torchvision")
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    opened = sources.open_dataset(str(root))
    assert sizes(opened) == {"train": 5, "validation": 2}
    train = splits.load_split(str(root), "train")
    assert train.class_names == ["n01", "n02"] and train.image_column == "image" and train.label_column == "label"
    assert opened.splits["train"]["label"] == [0, 0, 1, 1, 1]
    first = opened.splits["train"][0]["image"]  # the datasets Image feature decodes it
    assert isinstance(first, Image.Image) and first.size == (8, 8)
    assert opened.splits["train"].features["label"].names == ["n01", "n02"]


def test_class_folders_without_splits_are_the_train_split(tmp_path):
    root = tree(tmp_path / "flat", {".": {"cat": 2, "dog": 1}})
    assert sizes(sources.open_dataset(str(root))) == {"train": 3}


def test_reopen_reads_the_index_without_walking_the_tree(tmp_path, monkeypatch):
    root = tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    first = sources.open_dataset(str(root))
    record = json.loads((folder.index_dir(root) / "index.json").read_text())
    assert record["root"] == str(root.resolve()) and set(record["files"]) == {"train", "test"}

    def no_scan(*_):
        raise AssertionError("scanned again")

    monkeypatch.setattr(folder, "scan_folder", no_scan)
    again = sources.open_dataset(str(root))
    assert sizes(again) == sizes(first) and again.splits["train"]["image"] == first.splits["train"]["image"]


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new class"])
def test_a_changed_tree_is_seen_on_the_next_open(tmp_path, change):
    root = tree(tmp_path / "t", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    assert sizes(sources.open_dataset(str(root))) == {"train": 4, "validation": 2}
    assert (folder.index_dir(root) / "index.json").is_file()
    if change == "add":
        Image.new("RGB", (8, 8)).save(root / "train" / "a" / "extra.png")
        expected = {"train": 5, "validation": 2}
    elif change == "remove":
        (root / "train" / "b" / "b-0.png").unlink()
        expected = {"train": 3, "validation": 2}
    elif change == "rename":
        (root / "train" / "b" / "b-0.png").rename(root / "train" / "b" / "b-9.png")
        expected = {"train": 4, "validation": 2}
    else:
        tree(root, {"train": {"c": 1}, "val": {"c": 1}}, age_s=0)
        expected = {"train": 5, "validation": 3}
    opened = sources.open_dataset(str(root))
    assert sizes(opened) == expected
    paths = [v["path"] for v in opened.splits["train"].cast_column("image", __import__("datasets").Image(decode=False))["image"]]
    assert all(Path(p).is_file() for p in paths)
    if change == "new class":
        assert opened.splits["train"].features["label"].names == ["a", "b", "c"]


def test_a_tree_changed_moments_ago_is_used_but_not_indexed(tmp_path):
    root = tree(tmp_path / "fresh", {"train": {"a": 1, "b": 1}}, age_s=0)
    assert sizes(sources.open_dataset(str(root))) == {"train": 2}
    assert not (folder.index_dir(root) / "index.json").exists()  # a change in the same clock tick could hide
    Image.new("RGB", (8, 8)).save(root / "train" / "a" / "late.png")
    assert sizes(sources.open_dataset(str(root))) == {"train": 3}


@pytest.mark.parametrize(("layout", "message"), [
    ({"train": {"a": 1}, ".": {"stray": 1}}, "split folders (train) beside other folders (stray): class folders at mixed depths"),
    ({"train": {"a": 1, "b": 1}, "val": {"a": 1}}, "no class folder for b (present in train/)"),
    ({"train": {"a": 1, "empty": 0}}, "empty: empty class folder (no images); add images or remove the folder"),
])
def test_bad_trees_are_one_line_exit_2_and_write_nothing(cli, tmp_path, layout, message):
    root = tree(tmp_path / "bad", layout)
    code, out, err = cli("data", "show", root, "--json")
    assert code == 2 and message in err and "\n" not in err.strip() and not out
    assert not (tmp_path / "cache").exists()


def test_images_beside_class_folders_are_refused(tmp_path):
    root = tree(tmp_path / "bad", {"train": {"a": 1}})
    Image.new("RGB", (8, 8)).save(root / "train" / "loose.png")
    with pytest.raises(UsageError, match=r"train: images \(loose.png\) beside class folders: class folders at mixed depths"):
        sources.open_dataset(str(root))


def test_data_show_on_a_folder(cli, tmp_path):
    root = tree(tmp_path / "t", {"train": {"cat": 2, "dog": 1}, "validation": {"cat": 1, "dog": 1}})
    code, out, err = cli("data", "show", root, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["splits"] == {"train": 3, "validation": 2} and summary["class_names"] == ["cat", "dog"]
    assert summary["first_image"] == {"width": 8, "height": 8, "mode": "RGB"}
