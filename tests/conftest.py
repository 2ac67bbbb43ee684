"""Shared fixtures: tiny models (depth 2, dim 32) and tiny image datasets the tests build themselves.

Everything runs on the CPU in-process (importing timm costs ~10 s per process on these machines,
so tests call the Typer app through CliRunner instead of spawning `deitctl`).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Caches (folder indexes, teacher outputs) of this test session, never the user's or another session's
os.environ.setdefault("DEITCTL_CACHE", tempfile.mkdtemp(prefix="deitctl-tests-cache-"))

from pathlib import Path

import pytest

TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 4}
CLASSES = ["zero", "one", "two", "three"]


def make_images(n: int, size: int = 16, channels: int = 1, num_classes: int = 4, seed: int = 0):
    """Learnable synthetic images: class k is a bright square in quadrant k, plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, labels = [], []
    half = size // 2
    for i in range(n):
        label = i % num_classes
        arr = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
        r, c = divmod(label % 4, 2)
        arr[r * half : (r + 1) * half, c * half : (c + 1) * half] += 180
        img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode="L" if channels == 1 else "RGB")
        images.append(img)
        labels.append(label)
    return images, labels


def make_dataset_dict(n_train: int = 64, n_test: int = 32, size: int = 16, channels: int = 1):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    features = Features({"image": Image(), "label": ClassLabel(names=CLASSES)})
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = make_images(n, size, channels, len(CLASSES), seed)
        splits[split] = Dataset.from_dict({"image": images, "label": labels}, features=features)
    return DatasetDict(splits)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A `save_to_disk` directory: 64 train / 32 test grayscale 16×16 images, 4 classes."""
    path = tmp_path_factory.mktemp("data") / "quadrants"
    make_dataset_dict().save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_rgb_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "quadrants-rgb"
    make_dataset_dict(size=32, channels=3).save_to_disk(str(path))
    return path


def make_tiny_model(distilled: bool = False, in_chans: int = 1, img_size: int = 16, num_classes: int = 4, seed: int = 0):
    import timm
    import torch

    torch.manual_seed(seed)
    arch = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return timm.create_model(arch, img_size=img_size, in_chans=in_chans, num_classes=num_classes, **TINY_VIT)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model directory (config.json + model.safetensors) of a tiny plain DeiT for `tiny_data`."""
    from deitctl.models.store import save_model_dir

    path = tmp_path_factory.mktemp("models") / "plain"
    save_model_dir(make_tiny_model(False), path, label_names=CLASSES, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    return path


@pytest.fixture(scope="session")
def tiny_distilled_dir(tmp_path_factory) -> Path:
    """A model directory of a tiny distilled DeiT (class + distillation token) for `tiny_data`."""
    from deitctl.models.store import save_model_dir

    path = tmp_path_factory.mktemp("models") / "distilled"
    save_model_dir(make_tiny_model(True), path, label_names=CLASSES, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    return path


@pytest.fixture
def cli():
    """Run the deitctl app in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from deitctl import cli as cli_module

    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(cli_module.app, [str(a) for a in args], catch_exceptions=True)
        code = result.exit_code
        err = result.stderr if hasattr(result, "stderr") else ""
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            from deitctl.core.errors import DeitctlError

            if isinstance(exc, DeitctlError):  # what main() does for the real console script
                return exc.exit_code, result.stdout, f"error: {exc}"
            raise exc
        return code, result.stdout, err

    return run
