"""The whole flow a user runs against the Hub (issue 26): fine-tune a Hub model on a Hub dataset → eval → push →
pull → eval and predict by repo id → plain timm, all against tests/hub_server.py with the real clients.

The server holds what the real Hub does, made tiny: ``timm/deit_tiny_patch16_224.fb_in1k`` in timm's format (a
depth-2, width-32 DeiT at 32 px) and ``uoft-cs/cifar100`` with the real schema (``img``, ``fine_label`` and
``coarse_label`` with CIFAR-100's class names) as parquet files and a dataset card. Commands that read the Hub
dataset run as subprocesses (HF_ENDPOINT must be set before ``datasets`` is imported); the rest in-process.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_images, make_tiny_model
from hub_server import HubServer
from test_hub_datasets import hub_env  # noqa: F401  (the fixture: HF_HOME, caches and client constants)
from test_train import _subprocess_env

pytestmark = pytest.mark.slow

HUB_MODEL = "timm/deit_tiny_patch16_224.fb_in1k"
ARCH = HUB_MODEL.split("/")[1].split(".")[0]
CIFAR100 = "uoft-cs/cifar100"
PUSHED = "me/cifar100-tiny"
HUB_SEED = 7  # not the recipe's seed: a run that built its model afresh would not start from the Hub's weights

FINE = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]
COARSE = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
]
# the images: conftest's learnable quadrants (class k: a bright square in quadrant k) as four CIFAR-100 classes,
# with their real superclasses (apple: fruit and vegetables, aquarium fish: fish, baby: people, bear: large carnivores)
QUADRANT_CLASSES = [(0, 4), (1, 1), (2, 14), (3, 8)]  # (fine, coarse)
SPLITS = {"train": (64, 0), "test": (32, 1)}  # split: (images, seed)

FINETUNE = ["--epochs", "1", "--batch-size", "16", "--set", "num_workers=0", "--set", "precision=fp32",
            "--set", "compile=false", "--set", "img_size=32", "--set", "warmup_epochs=0", "--set", "mixup=0",
            "--set", "cutmix=0", "--set", "repeated_aug=0", "--set", "lr=2"]
EVAL = ["--json", "--num-workers", "0", "--precision", "fp32"]
PREDICT = ["--json", "--num-workers", "0", "--precision", "fp32"]


# ------------------------------------------------------------------------------- what the Hub holds
def publish_hub_model(api, tmp_path: Path) -> Path:
    """A tiny DeiT in timm's own format (what `timm.create_model("hf-hub:…", pretrained=True)` reads), as an
    ImageNet-1k checkpoint: 1000 classes, 3 channels."""
    from timm.models import save_for_hf

    folder = tmp_path / "hub-model"
    model = make_tiny_model(in_chans=3, img_size=32, num_classes=1000, seed=HUB_SEED)
    save_for_hf(model, str(folder), safe_serialization=True)
    api.create_repo(HUB_MODEL)
    api.upload_folder(folder_path=folder, repo_id=HUB_MODEL)
    return folder


def cifar100_card(num_bytes: dict[str, int], num_examples: dict[str, int]) -> str:
    """uoft-cs/cifar100's dataset card, front matter as on the Hub (features with the class names, splits, configs)."""
    def class_label(names: list[str]) -> dict:
        return {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}

    info = {"config_name": "cifar100",
            "features": [{"name": "img", "dtype": "image"}, {"name": "fine_label", **class_label(FINE)},
                         {"name": "coarse_label", **class_label(COARSE)}],
            "splits": [{"name": s, "num_bytes": num_bytes[s], "num_examples": num_examples[s]} for s in SPLITS],
            "download_size": sum(num_bytes.values()), "dataset_size": sum(num_bytes.values())}
    meta = {"language": ["en"], "license": "unknown", "task_categories": ["image-classification"],
            "pretty_name": "Cifar100", "dataset_info": info,
            "configs": [{"config_name": "cifar100", "default": True,
                         "data_files": [{"split": s, "path": f"cifar100/{s}-*"} for s in SPLITS]}]}
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# Dataset Card for CIFAR-100 (tiny test copy)\n"


def publish_cifar100(api, tmp_path: Path) -> dict:
    """uoft-cs/cifar100's layout and schema, with 64 train / 32 test 32×32 RGB images; returns the test split."""
    from datasets import ClassLabel, Dataset, Features, Image

    features = Features({"img": Image(), "fine_label": ClassLabel(names=FINE),
                         "coarse_label": ClassLabel(names=COARSE)})
    folder, splits = tmp_path / "hub-cifar100", {}
    (folder / "cifar100").mkdir(parents=True)
    for split, (n, seed) in SPLITS.items():
        images, quadrants = make_images(n, size=32, channels=3, seed=seed)
        rows = {"img": images, "fine_label": [QUADRANT_CLASSES[q][0] for q in quadrants],
                "coarse_label": [QUADRANT_CLASSES[q][1] for q in quadrants]}
        splits[split] = Dataset.from_dict(rows, features=features)
        splits[split].to_parquet(str(folder / f"cifar100/{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text(cifar100_card({s: d.data.nbytes for s, d in splits.items()},
                                                    {s: len(d) for s, d in splits.items()}))
    api.create_repo(CIFAR100, repo_type="dataset")
    api.upload_folder(folder_path=folder, repo_id=CIFAR100, repo_type="dataset")
    return splits["test"]


# ----------------------------------------------------------------------------------- the user's side
def deitctl(*args: str | Path) -> subprocess.CompletedProcess:
    """`deitctl ARGS` in a fresh process (HF_ENDPOINT and the caches come from the environment hub_env set)."""
    res = subprocess.run([sys.executable, "-m", "deitctl.cli", *map(str, args)], env=_subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"deitctl {' '.join(map(str, args))}\n{res.stderr[-3000:]}"
    return res


def in_process(cli, *args: str | Path) -> str:
    code, out, err = cli(*args)
    assert code == 0, f"deitctl {' '.join(map(str, args))}\n{err}"
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drift(start: Path, end: Path) -> float:
    """How far a run's weights moved from the model it started from: ‖end − start‖ / ‖start‖ over the randomly
    initialised tensors both hold in the same shape (the backbone's matrices and embeddings: not the LayerNorms,
    which every init starts at 1 and 0, nor a new head, which has another shape)."""
    from safetensors.torch import load_file

    a, b = load_file(str(start / "model.safetensors")), load_file(str(end / "model.safetensors"))
    shared = [k for k in a if k in b and a[k].shape == b[k].shape and a[k].ndim >= 2]
    assert "head.weight" not in shared and "blocks.1.mlp.fc2.weight" in shared, shared
    moved = sum(float((b[k] - a[k]).pow(2).sum()) for k in shared)
    return (moved / sum(float(a[k].pow(2).sum()) for k in shared)) ** 0.5


def logits(model, seed: int = 0):
    import torch

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_finetune_eval_push_pull_predict_a_hub_model_on_a_hub_dataset(cli, hub_env, tmp_path):  # noqa: F811
    import timm
    from huggingface_hub import HfApi, constants

    run, pulled, image = tmp_path / "run", tmp_path / "pulled", tmp_path / "test-0.png"
    with HubServer() as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        api = HfApi(endpoint=hub.url)
        published = publish_hub_model(api, tmp_path)
        test_split = publish_cifar100(api, tmp_path)
        test_split[0]["img"].save(image)

        # 1. fine-tune the Hub model on the Hub dataset, by the names a user types
        res = deitctl("finetune", "--dataset", "cifar100", "--from", f"hf-hub:{HUB_MODEL}", "--out", run, *FINETUNE)
        header = next((line for line in res.stderr.splitlines() if "→" in line and "params" in line), res.stderr)
        assert f" {ARCH} (" in header and "100 classes" in header, header
        assert json.loads((run / "config.json").read_text())["label_names"] == FINE
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        hub_args = json.loads((published / "config.json").read_text())["model_args"]
        assert recipe["model"] == ARCH and recipe["init_from"] == f"hf-hub:{HUB_MODEL}"
        assert {k: recipe["model_args"].get(k) for k in ("depth", "embed_dim", "num_heads", "patch_size")} == {
            "depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 4} == {
            k: hub_args[k] for k in ("depth", "embed_dim", "num_heads", "patch_size")}
        assert drift(published, run) < 0.5  # it started from the Hub's weights (another seed's init: 1.42)

        # 2. evaluate the run on the dataset its recipe names
        scored = json.loads(deitctl("eval", run, *EVAL).stdout)
        assert scored["num_samples"] == len(test_split) and scored["dataset"] == "cifar100"
        assert scored["loss"] < math.log(len(FINE))  # it learned a little: the classes the data holds

        # 3. push: weights, config and a card that names the dataset, in one commit
        commit = json.loads(in_process(cli, "push", run, PUSHED, "--json"))["commit"]
        files = hub.state.repos[PUSHED].commits[commit]
        assert {"config.json", "model.safetensors", "README.md"} <= set(files)
        assert files["model.safetensors"] == (run / "model.safetensors").read_bytes()
        assert yaml.safe_load(files["README.md"].decode().split("---\n")[1])["datasets"] == [CIFAR100]

        # 4. pull it back: the same bytes
        in_process(cli, "pull", PUSHED, "--out", pulled)
        for name in ("model.safetensors", "config.json"):
            assert sha256(pulled / name) == sha256(run / name), name

        # 5. evaluate the repo without --dataset: the card says which data, and the score is the run's
        res = deitctl("eval", PUSHED, *EVAL)
        assert "evaluating on cifar100 (test), the dataset its model card names" in res.stderr, res.stderr
        by_repo = json.loads(res.stdout)
        same = ("top1", "top5", "loss", "num_samples", "dataset", "split")
        assert {k: by_repo[k] for k in same} == {k: scored[k] for k in same}

        # 6. predict by repo id and by run directory: JSON Lines, one object per image, the same answer
        lines = in_process(cli, "predict", PUSHED, image, *PREDICT).splitlines()
        assert len(lines) == 1
        from_repo = json.loads(lines[0])
        assert from_repo == json.loads(in_process(cli, "predict", run, image, *PREDICT))
        top = from_repo["top_k"][0]
        assert from_repo["path"] == str(image) and FINE[top["index"]] == top["label"], from_repo

        # 7. plain timm reads the pushed repo and gives the run's logits
        for name, value in {"ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "hf/hub"),
                            "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}"}.items():
            hub_env.setattr(constants, name, value)
        from_hub = timm.create_model(f"hf-hub:{PUSHED}", pretrained=True)
    from_run = timm.create_model(f"local-dir:{run}", pretrained=True)
    assert from_hub.num_classes == 100
    assert (logits(from_hub) - logits(from_run)).abs().max().item() == 0.0
