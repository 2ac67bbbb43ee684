"""Data: every source format, bad input as one clear line, the transforms, Mixup, and `deitctl data show`."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import pytest
from conftest import CLASSES, make_dataset_dict, make_images

from deitctl.core.errors import DeitctlError, UsageError
from deitctl.data import samples, sources, splits


# ------------------------------------------------------------------------------------- helpers
def image_tree(root: Path, per_class: int = 3, corrupt: str | None = None) -> Path:
    """``root/{train,test}/{class}/*.png|jpg`` with real images; ``corrupt`` names a garbage file."""
    for split, seed in (("train", 0), ("test", 1)):
        images, labels = make_images(per_class * 2, size=20, channels=3, num_classes=2, seed=seed)
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / ("cat", "dog")[label]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    if corrupt:
        (root / "train" / "cat" / corrupt).write_bytes(b"this is not an image")
    return root


def labels_of(split: splits.LabeledSplit) -> list[int]:
    return list(split.dataset[split.label_column])


def first_tensor(split: splits.LabeledSplit, size: int = 16):
    from torchvision import transforms as T

    return samples.with_transform(split, T.Compose([T.Resize((size, size)), T.ToTensor()]), 1)[0]


# ------------------------------------------------------------------------------------- sources
def test_save_to_disk_directory(tiny_data):
    train, test = splits.load_split(str(tiny_data), "train"), splits.load_split(str(tiny_data), "test")
    assert (len(train), len(test)) == (64, 32)
    assert train.class_names == CLASSES and (train.image_column, train.label_column) == ("image", "label")
    assert labels_of(train)[:5] == [0, 1, 2, 3, 0]
    sample = first_tensor(train)
    assert sample["x"].shape == (1, 16, 16) and sample["y"] == 0
    assert splits.load_split(str(tiny_data), "validation").split == "validation"  # alias: test


def test_image_folder_tree_of_png_and_jpeg(tmp_path):
    root = image_tree(tmp_path / "pets")
    train = splits.load_split(str(root), "train")
    assert len(train) == 6 and train.class_names == ["cat", "dog"]
    assert len(splits.load_split(str(root), "test")) == 6
    assert first_tensor(train)["x"].shape == (1, 16, 16)


def test_parquet_files_keep_class_names_and_splits(tmp_path):
    for split, ds in make_dataset_dict(8, 4).items():
        ds.to_parquet(str(tmp_path / f"{split}-00000-of-00001.parquet"))
    train, test = splits.load_split(str(tmp_path), "train"), splits.load_split(str(tmp_path), "test")
    assert (len(train), len(test), train.class_names) == (8, 4, CLASSES)
    assert first_tensor(test)["y"] == 0
    assert len(splits.load_split(str(tmp_path / "train-00000-of-00001.parquet"))) == 8  # a single file


def test_arrow_files_split_by_folder(tmp_path, tiny_data):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for f in (tiny_data / split).glob("*.arrow"):
            (tmp_path / split / f.name).write_bytes(f.read_bytes())
    assert len(splits.load_split(str(tmp_path), "test")) == 32


def test_string_and_integer_labels_give_the_same_classes_in_every_split(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Image, Value

    images, _ = make_images(6)
    feats = Features({"image": Image(), "animal": Value("string"), "label": Value("int64")})
    dd = DatasetDict({
        "train": Dataset.from_dict({"image": images[:4], "animal": ["dog", "cat", "eel", "cat"],
                                    "label": [0, 1, 0, 1]}, features=feats),
        "test": Dataset.from_dict({"image": images[4:], "animal": ["eel", "eel"], "label": [4, 0]}, features=feats),
    })
    dd.save_to_disk(str(tmp_path / "d"))
    test = splits.load_split(str(tmp_path / "d"), "test", label_column="animal")
    assert test.class_names == ["cat", "dog", "eel"] and labels_of(test) == [2, 2]
    train = splits.load_split(str(tmp_path / "d"), "train")  # integer labels: 0..max over all splits
    assert train.class_names == ["0", "1", "2", "3", "4"]


def write_idx(path: Path, array) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_fashion_mnist_idx_conversion(tmp_path, monkeypatch):
    import numpy as np

    from deitctl.data import fashion_mnist

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
    assert fashion_mnist.idx_available(tmp_path)
    expected = fashion_mnist.read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))
    built = fashion_mnist.build(tmp_path)
    assert {k: len(v) for k, v in built.items()} == {"train": 5, "test": 3}
    assert built["train"].features["label"].names[9] == "Ankle boot"
    assert np.array_equal(np.asarray(built["train"][2]["image"]), expected[2])


@pytest.mark.skipif(not __import__("deitctl.data.fashion_mnist").data.fashion_mnist.idx_available(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(cli):
    code, out, _ = cli("data", "show", "fashion-mnist", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["splits"] == {"train": 60_000, "test": 10_000}
    assert summary["class_names"][9] == "Ankle boot" and summary["first_image"]["width"] == 28
    train = splits.load_split("fashion-mnist", "train")
    assert len(train) == 60_000 and len(splits.load_split("fashion-mnist", "test")) == 10_000
    assert train.class_names[0] == "T-shirt/top" and train.num_classes == 10
    assert first_tensor(train, 28)["x"].shape == (1, 28, 28)


@pytest.mark.parametrize(("name", "column", "names"), [("cifar100", "fine_label", ["apple", "aquarium_fish"]),
                                                       ("cifar100-coarse", "coarse_label", ["aquatic_mammals", "fish"])])
def test_cifar100_fine_labels_unless_coarse_is_asked(monkeypatch, name, column, names):
    from datasets import ClassLabel, Dataset, Features, Image

    images, _ = make_images(2)
    feats = Features({"img": Image(), "fine_label": ClassLabel(names=["apple", "aquarium_fish"]),
                      "coarse_label": ClassLabel(names=["aquatic_mammals", "fish"])})
    fake = Dataset.from_dict({"img": images, "fine_label": [0, 1], "coarse_label": [1, 0]}, features=feats)
    seen = []
    monkeypatch.setattr(sources, "_load_hub", lambda hub_id, ref: seen.append(hub_id) or {"train": fake})
    split = splits.load_split(name, "train")
    assert seen == ["uoft-cs/cifar100"] and (split.image_column, split.label_column) == ("img", column)
    assert split.class_names == names


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("ref", ["uoft-cs/cifar10", "cifar10", "somebody/not-cached"])
def test_hub_dataset_not_cached_offline_is_one_clear_line(cli, ref):
    with pytest.raises(DeitctlError) as e:
        splits.load_split(ref, "train")
    msg = str(e.value)
    assert "\n" not in msg and "not in the local datasets cache" in msg and "image folder, parquet" in msg
    code, _, err = cli("data", "show", ref)
    assert code == 1 and err.startswith("error: dataset ")


def test_unknown_name_suggests(cli):
    with pytest.raises(UsageError, match=r"unknown dataset 'fashion_mnist' \(did you mean: fashion-mnist"):
        splits.load_split("fashion_mnist")
    assert cli("data", "show", "cifar-10")[0] == 2


def test_missing_columns_name_them_and_the_flags(tmp_path, cli):
    from datasets import Dataset, Features, Image, Value

    images, labels = make_images(4)
    feats = Features({"pic": Image(), "kind": Value("int64")})
    Dataset.from_dict({"pic": images, "kind": labels}, features=feats).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(UsageError, match=r"label column: cannot infer it \(columns: pic, kind\); pass --label-column"):
        splits.load_split(str(tmp_path / "d"))
    with pytest.raises(UsageError, match=r"image column: 'photo' not found .*; pass --image-column NAME"):
        splits.load_split(str(tmp_path / "d"), image_column="photo", label_column="kind")
    with pytest.raises(UsageError, match=r"column 'kind' does not hold images"):
        splits.load_split(str(tmp_path / "d"), image_column="kind", label_column="kind")
    assert splits.load_split(str(tmp_path / "d"), label_column="kind").class_names == ["0", "1", "2", "3"]
    code, _, err = cli("data", "show", tmp_path / "d")
    assert code == 2 and err.startswith("error: ") and "pass --label-column NAME" in err


def test_missing_split_lists_the_available_ones(tiny_data):
    with pytest.raises(UsageError, match=r"no split 'holdout' \(available: train, test\); pass --split"):
        splits.load_split(str(tiny_data), "holdout")


def test_empty_split_and_empty_or_missing_paths(tmp_path):
    from datasets import Dataset

    dd = make_dataset_dict(4, 1)
    dd["test"] = dd["test"].select([])
    dd.save_to_disk(str(tmp_path / "d"))
    dd["train"].to_parquet(str(tmp_path / "p" / "train.parquet"))
    dd["test"].to_parquet(str(tmp_path / "p" / "test.parquet"))
    for where in ("d", "p"):  # datasets itself refuses to load either: the message still says which split
        with pytest.raises(UsageError, match=f"{tmp_path / where}: split 'test' is empty"):
            splits.load_split(str(tmp_path / where), "train")
    monkeypatch_free = sources.OpenedDataset({"test": dd["test"]}, None, None, "mem")
    with pytest.raises(UsageError, match="dataset 'mem' split 'test' is empty"):
        splits.label_split(monkeypatch_free, "test")
    assert isinstance(dd["test"], Dataset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images, parquet, arrow or WebDataset"):
        splits.load_split(str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="no such file or directory"):
        splits.load_split(str(tmp_path / "nope"))


def test_corrupt_image_in_a_worker_fails_with_the_file_named(tmp_path):
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    split = splits.load_split(str(image_tree(tmp_path / "pets", corrupt="broken.png")), "train")
    ds = samples.with_transform(split, T.Compose([T.Resize((8, 8)), T.ToTensor()]), 3)
    batches = iter(DataLoader(ds, batch_size=4, num_workers=1, collate_fn=samples.collate))
    with pytest.raises(samples.UnreadableImageError) as e:
        list(batches)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"unreadable image {tmp_path}/pets/train/cat/broken.png (")
    assert "remove or replace the file" in msg


def test_corrupt_embedded_image_names_the_sample():
    with pytest.raises(samples.UnreadableImageError, match=r"unreadable image sample 7 of cifar10\[train\]"):
        samples.decode_image({"bytes": b"junk", "path": None}, "RGB", 7, "cifar10[train]")


# ---------------------------------------------------------------------------------- transforms
def recipe(*sets: str):
    from deitctl.config.loader import load_recipe

    return load_recipe("fashion-deit-ti", ["reprob=0", *sets])


def constant_image(value: int, size: int, channels: int):
    from PIL import Image

    return Image.new("L" if channels == 1 else "RGB", (size, size), value if channels == 1 else (value,) * 3)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (1, 48), (3, 64)])
def test_eval_and_train_transforms_shapes_and_normalisation(channels, size):
    import random

    import torch

    from deitctl.data.transforms import recipe_eval_transform, train_transform

    r = recipe(f"in_chans={channels}", f"img_size={size}", "mean=[0.5]", "std=[0.25]")
    img = constant_image(204, size + 7, channels)  # 0.8 → (0.8 - 0.5) / 0.25 = 1.2
    x = recipe_eval_transform(r)(img)
    assert x.shape == (channels, size, size) and torch.allclose(x, torch.full_like(x, 1.2), atol=1e-3)
    outputs = []
    for stats in (("mean=[0.5]", "std=[0.25]"), ("mean=[0.0]", "std=[1.0]")):  # same random draws
        random.seed(0), torch.manual_seed(0)
        outputs.append(train_transform(recipe(f"in_chans={channels}", f"img_size={size}", *stats))(img))
    normalised, raw = outputs
    assert normalised.shape == (channels, size, size)
    assert torch.allclose(normalised, (raw - 0.5) / 0.25, atol=1e-5) and 0 <= raw.min() and raw.max() <= 1


def test_eval_transform_small_images_are_not_resized_large_ones_are():
    import numpy as np
    import torch
    from PIL import Image

    from deitctl.config.loader import load_recipe
    from deitctl.data.transforms import eval_transform, recipe_data_config
    from deitctl.models.types import DataConfig

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    config = recipe_data_config(load_recipe("fashion-deit-ti", ["mean=[0.0]", "std=[1.0]"]))
    assert config.crop_pct == 1.0  # the authors' ≤ 32 px path: fed as they are, and the saved config says so
    x = eval_transform(config)(Image.fromarray(small, "L"))
    assert torch.equal(x[0], torch.from_numpy(small).float() / 255)
    big = np.zeros((64, 64), dtype=np.uint8)
    big[:3] = 255  # a bright band at the top: cropped away after resizing to 64 / 0.875 = 73
    x = eval_transform(DataConfig((1, 64, 64), (0.0,), (1.0,)))(Image.fromarray(big, "L"))
    assert x.shape == (1, 64, 64) and x.max() < 0.05  # a plain center crop would keep the band


def test_mixup_yields_soft_targets_with_label_smoothing():
    import torch

    from deitctl.data.transforms import make_mixup

    assert make_mixup(recipe("mixup=0", "cutmix=0"), 4) is None
    x, y = torch.rand(8, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    plain = make_mixup(recipe("mixup=0.8", "cutmix=1.0", "mixup_prob=0", "label_smoothing=0.1"), 4)
    _, t = plain(x.clone(), y)
    assert torch.allclose(t, torch.nn.functional.one_hot(y, 4) * 0.9 + 0.025)
    torch.manual_seed(0)
    mixed = make_mixup(recipe("mixup=0.8", "cutmix=1.0", "label_smoothing=0.1"), 4)
    _, t = mixed(x.clone(), y)
    assert t.shape == (8, 4) and torch.allclose(t.sum(1), torch.ones(8))
    assert t.min() >= 0.025 - 1e-6 and t.max() <= 0.925 + 1e-6
    assert ((t > 0.03).sum(1) == 2).all()  # every row mixes its class with the flipped batch's


# ----------------------------------------------------------------------------------- data show
def test_data_show_json_and_table(cli, tiny_data):
    code, out, _ = cli("data", "show", tiny_data, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["splits"] == {"train": 64, "test": 32}
    assert (summary["num_classes"], summary["class_names"]) == (4, CLASSES)
    assert (summary["image_column"], summary["label_column"], summary["columns"]) == ("image", "label",
                                                                                      ["image", "label"])
    assert summary["first_image"] == {"width": 16, "height": 16, "mode": "L"}
    code, out, _ = cli("data", "show", tiny_data, "--split", "test")
    assert code == 0 and "classes (4): zero, one, two, three" in out and "train" not in out.split("classes")[0]


def test_data_show_grid_png(cli, tiny_rgb_data, tmp_path):
    from PIL import Image

    (tmp_path / "mix.yaml").write_text("base: fashion-deit-ti\nin_chans: 3\nimg_size: 32\nmixup: 0.8\ncutmix: 1.0\n")
    out = tmp_path / "plots" / "grid.png"
    code, stdout, _ = cli("data", "show", tiny_rgb_data, "--grid", out, "--recipe", tmp_path / "mix.yaml", "--json")
    assert code == 0 and json.loads(stdout)["grid"] == str(out)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 300
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # written atomically, no temp left


def test_randaugment_posterize_to_zero_bits_does_not_crash_with_current_pillow():
    from PIL import Image

    from deitctl.data.transforms import train_transform

    transform = train_transform(recipe("img_size=48", "in_chans=3", "rand_augment=rand-m9-mstd0.5-inc1"))
    rand_augment = next(t for t in transform.transforms if hasattr(t, "ops"))
    op = next(o for o in rand_augment.ops if o.name == "PosterizeIncreasing")
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0  # 0 bits kept: timm's black image
    assert op(Image.new("RGB", (8, 8), (200, 100, 50))).getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(("mode", "shape", "pad", "rand_augment"), [
    ("L", (28, 28), 4, None), ("L", (28, 28), 0, None), ("RGB", (32, 32, 3), 4, None), ("L", (30, 30), 2, None),
    ("L", (28, 28), 4, "rand-m9-mstd0.5-inc1"),
])
def test_small_train_is_bit_identical_to_the_torchvision_ops(mode, shape, pad, rand_augment):
    """The fast small-image path draws and computes exactly what Compose(Resize, RandomCrop, flip, ...) does."""
    import numpy as np
    import torch
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T

    from deitctl.data.transforms import SmallTrain
    from deitctl.runtime.rng import seed_all

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), mode)
    c = 1 if mode == "L" else 3
    mean, std = (0.3,) * c, (0.35,) * c
    from deitctl.data.transforms import pillow_safe

    ra = pillow_safe(rand_augment_transform(rand_augment, {"translate_const": 12, "img_mean": 76})) \
        if rand_augment else None
    erasing = RandomErasing(0.5, mode="pixel", device="cpu")
    steps = [T.Resize(28, interpolation=T.InterpolationMode.BICUBIC), T.RandomCrop(28, padding=pad),
             T.RandomHorizontalFlip(), *([ra] if ra else []), T.ToTensor(), T.Normalize(mean, std), erasing]
    reference, fast = T.Compose(steps), SmallTrain(28, mean, std, ra, erasing, pad=pad)
    differ = 0
    for seed in range(60):
        seed_all(seed)
        a = reference(img)
        seed_all(seed)
        b = fast(img)
        assert a.shape == b.shape == (c, 28, 28)
        differ += not torch.equal(a, b)
    assert differ == 0


def test_seeded_batches_equal_seeded_samples(tiny_data):
    """A batch read in one Arrow call gives each sample the augmentation its own seed gives it alone."""
    import torch

    from deitctl.config.loader import load_recipe
    from deitctl.data.loaders import SeededDataset
    from deitctl.data.transforms import train_transform

    recipe = load_recipe("fashion-deit-ti", ["in_chans=1", "img_size=16"])
    ds = SeededDataset(samples.with_transform(splits.load_split(str(tiny_data)), train_transform(recipe), 1), seed=3)
    keys = [(1, i) for i in range(6)]
    state = torch.get_rng_state()
    batch = ds.__getitems__(keys)
    assert torch.equal(state, torch.get_rng_state())  # the training RNG is left alone in the main process
    for key, sample in zip(keys, batch, strict=True):
        assert torch.equal(ds[key]["x"], sample["x"]) and ds[key]["y"] == sample["y"]
    assert not torch.equal(batch[0]["x"], ds[(2, 0)]["x"])  # another epoch, another augmentation


def test_decode_once_gives_repeated_copies_the_images_decoding_each_gives(tmp_path, monkeypatch):
    """Repeated augmentation's copies of a sample, decoded once at 224 px with the DeiT-B augmentation, are the
    same tensors as with each copy decoded (the off switch), and the decoder runs once per distinct sample."""
    import torch
    from PIL import Image

    from deitctl.config.loader import load_recipe
    from deitctl.data.loaders import SeededDataset
    from deitctl.data.transforms import train_transform

    for i in range(4):
        (tmp_path / "imgs" / "train" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.effect_mandelbrot((300, 260), (-2 + i / 4, -1.2, 1, 1.2), 60).convert("RGB").save(
            tmp_path / "imgs" / "train" / f"c{i % 2}" / f"{i}.jpg", quality=90)
    split = splits.load_split(str(tmp_path / "imgs"))
    transform = train_transform(load_recipe("deit-b"))
    keys = [(0, 2, 0), (0, 2, 1), (0, 2, 2), (0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 3, 0)]  # as EpochSampler tags them
    decodes = []
    real = samples.decode_image
    monkeypatch.setattr(samples, "decode_image", lambda *a, **k: decodes.append(a[0]["path"]) or real(*a, **k))
    once = SeededDataset(samples.with_transform(split, transform, 3), seed=1).__getitems__(keys)
    assert len(decodes) == 3
    each = SeededDataset(samples.with_transform(split, transform, 3), seed=1, decode_once=False).__getitems__(keys)
    assert len(decodes) == 3 + 7
    for a, b in zip(once, each, strict=True):
        assert torch.equal(a["x"], b["x"]) and a["y"] == b["y"]
    assert not torch.equal(once[0]["x"], once[1]["x"])  # each copy its own augmentation


def test_fast_augment_off_switch_gives_the_same_images():
    import numpy as np
    import torch
    from PIL import Image

    from deitctl.config.loader import load_recipe
    from deitctl.data.transforms import train_transform
    from deitctl.runtime.rng import seed_all

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8), "L")
    fast, slow = (train_transform(load_recipe("fashion-deit-ti", [f"fast_augment={on}"])) for on in ("true", "false"))
    assert type(fast).__name__ == "SmallTrain" and type(slow).__name__ == "Compose"
    ra = load_recipe("fashion-deit-ti", ["rand_augment=rand-m9-mstd0.5-inc1"])
    assert any(getattr(op, "aug_fn", None).__name__ == "_posterize"  # the 0-bit Posterize fix reaches the fast path
               for step in train_transform(ra).transforms for op in getattr(step, "ops", []))
    for seed in range(20):
        seed_all(seed)
        a = fast(img)
        seed_all(seed)
        assert torch.equal(a, slow(img))
