"""What users load elsewhere scores what deitctl reports: plain timm and transformers, through their own front doors.

The models are trained by `deitctl train` on real Fashion-MNIST images (a small subset), so the configs
under test are the ones training writes. timm: `create_model("local-dir:RUN", pretrained=True)` +
`resolve_data_config` + `create_transform`; transformers: `AutoImageProcessor` +
`AutoModelForImageClassification` on `deitctl export --format transformers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deitctl.data.fashion_mnist import idx_available

pytestmark = pytest.mark.skipif(not idx_available(), reason="needs Debian's dataset-fashion-mnist")
# the main job's students train with Mixup/CutMix; a few tiny epochs learn too little under mixing (or erasing,
# or smoothed labels)
TINY = ["--set", "mixup=0", "--set", "cutmix=0", "--set", "model_args.depth=2", "--set", "model_args.embed_dim=32", "--set", "model_args.num_heads=2",
        "--set", "num_workers=0", "--set", "precision=fp32", "--set", "drop_path=0", "--set", "warmup_epochs=0.2",
        "--set", "reprob=0", "--set", "label_smoothing=0"]
TEST_IMAGES = 600


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """A save_to_disk copy of real Fashion-MNIST: 512 training and the first 600 test images."""
    from datasets import DatasetDict

    from deitctl.data.fashion_mnist import load_local

    full = load_local()
    path = tmp_path_factory.mktemp("fm") / "fashion-small"
    DatasetDict({"train": full["train"].select(range(512)), "test": full["test"].select(range(TEST_IMAGES))}
                ).save_to_disk(str(path))
    return path


def _train(out: Path, recipe: str, data: Path, size: int, *extra: str, epochs: int, batch: int) -> Path:
    from typer.testing import CliRunner

    from deitctl.cli import app

    args = ["train", recipe, "--dataset", str(data), "--out", str(out), "--epochs", str(epochs), "--batch-size", str(batch),
            "--set", f"img_size={size}", "--set", "num_workers=0", "--set", "precision=fp32",
            "--set", "lr=2.5e-3", "--set", f"lr_base_batch={batch}",  # 2.5e-3 at any batch size
            "--set", "compile=false", "--set", "eval_every=0", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module", params=[28, 224], ids=["28px", "224px"])
def runs(request, fashion, tmp_path_factory) -> tuple[Path, Path]:
    """(convnet teacher, hard-distilled DeiT taught by it), both trained at the size given, on all 512 images.

    Both must learn enough to predict several classes (the tests count them), on every CPU's rounding. A
    hard-distilled student predicts little beyond the classes its teacher's labels name, and at 224 px every
    training image is a random-resized crop (down to 8 % of it): 16 steps of 32 images, half of them warm-up,
    with erasing and smoothed labels, left a ~20 % teacher and a student predicting 2 or 3 classes (seeds 0-2).
    Hence many small steps, a short warm-up, and neither erasing nor label smoothing for either (what the
    recipe's teacher, its quarter-width resnet10t, trains with: a short-schedule convnet is underfit).
    """
    size, root = request.param, tmp_path_factory.mktemp(f"runs{request.param}")
    patch = ["--set", f"model_args.patch_size={4 if size == 28 else 16}"]
    teacher = _train(root / "teacher", "fashion-teacher", fashion, size, "--set", "warmup_epochs=0.25", epochs=3, batch=8)
    student = _train(root / "student", "fashion-deit-ti-distilled", fashion, size, *TINY, *patch,
                     "--teacher", str(teacher), epochs=6, batch=16)
    return teacher, student


def deitctl_eval(cli, run: Path, data: Path) -> tuple[float, torch.Tensor]:
    """Top-1 and per-image predictions, as `deitctl eval --save` reports and keeps them."""
    import numpy as np

    code, out, err = cli("eval", run, "--dataset", data, "--precision", "fp32", "--num-workers", "0", "--json",
                         "--save")
    assert code == 0, err
    with np.load(run / "predictions.npz") as saved:
        return json.loads(out)["top1"], torch.from_numpy(saved["pred"])


def _images(data: Path):
    from datasets import load_from_disk

    test = load_from_disk(str(data))["test"]
    return [img.convert("L") for img in test["image"]], torch.tensor(test["label"])


def _predict(forward, images, transform) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([forward(torch.stack([transform(i) for i in images[k:k + 100]])).argmax(1)
                          for k in range(0, len(images), 100)])


def _pct(preds: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (preds == labels).float().mean().item()


def test_plain_timm_with_the_saved_config_scores_what_deitctl_eval_reports(cli, runs, fashion):
    import timm
    from timm.data import create_transform, resolve_data_config

    images, labels = _images(fashion)
    for run in runs:
        model = timm.create_model(f"local-dir:{run}", pretrained=True).eval()
        theirs = _predict(model, images, create_transform(**resolve_data_config({}, model=model)))
        top1, ours = deitctl_eval(cli, run, fashion)
        assert top1 == pytest.approx(_pct(ours, labels))
        assert (theirs == ours).float().mean() >= 1 - 1 / TEST_IMAGES, run  # per image, at most one differs
        assert abs(_pct(theirs, labels) - top1) <= 100 / TEST_IMAGES, run
        assert ours.unique().numel() >= 3  # the decisions depend on the pixels, so a preprocessing mismatch shows


def test_transformers_auto_classes_score_what_deitctl_eval_reports(cli, runs, fashion, tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    student = runs[1]
    out = tmp_path / "hf"
    code, _, err = cli("export", student, "--format", "transformers", "--out", out)
    assert code == 0, err
    processor = AutoImageProcessor.from_pretrained(str(out))
    model = AutoModelForImageClassification.from_pretrained(str(out)).eval()
    images, labels = _images(fashion)
    with torch.no_grad():
        theirs = torch.cat([model(**processor(images[k:k + 100], return_tensors="pt")).logits.argmax(1)
                            for k in range(0, len(images), 100)])
    top1, ours = deitctl_eval(cli, student, fashion)
    # transformers' resize rounds a pixel here and there one grey level apart from PIL's: a few images at most
    assert (theirs == ours).float().mean() >= 1 - 3 / TEST_IMAGES
    assert abs(_pct(theirs, labels) - top1) <= 300 / TEST_IMAGES


@pytest.fixture(scope="module")
def fashion5(fashion, tmp_path_factory) -> Path:
    """The same images relabelled into 5 classes (pairs of Fashion-MNIST classes): a transfer, with new heads."""
    from datasets import ClassLabel, load_from_disk

    data = load_from_disk(str(fashion))
    names = [f"{a}+{b}" for a, b in zip(data["train"].features["label"].names[::2],
                                         data["train"].features["label"].names[1::2], strict=True)]
    path = tmp_path_factory.mktemp("fm5") / "fashion5"
    data.map(lambda row: {"label": row["label"] // 2}).cast_column("label", ClassLabel(names=names)).save_to_disk(
        str(path))
    return path


@pytest.mark.parametrize("runs", [28], indirect=True)
@pytest.mark.parametrize("taught", [False, True], ids=["no-teacher", "teacher"])
def test_a_finetuned_distilled_model_scores_the_same_in_deitctl_timm_and_transformers(cli, runs, fashion5, tmp_path,
                                                                                     taught):
    """Fine-tuning a DeiT⚗ to new classes without a teacher trains both new heads on the labels (label_both_heads):
    the model deitctl evaluates (late fusion) is the one plain timm and transformers compute (the mean of both
    heads). With a teacher (the 10-class one's labels could not serve 5 classes: a teacher fine-tuned alike)."""
    pytest.importorskip("transformers")
    import timm
    from timm.data import create_transform, resolve_data_config
    from transformers import AutoModelForImageClassification

    fashion = fashion5
    teacher, student = runs
    how = ["--set", "distillation_type=none"]
    if taught:
        code, _, err = cli("finetune", "fashion-teacher", "--from", teacher, "--dataset", fashion, "--out",
                           tmp_path / "teacher5", "--epochs", "1", "--batch-size", "16", "--set", "num_workers=0",
                           "--set", "compile=false", "--set", "warmup_epochs=0.25")
        assert code == 0, err
        how = ["--teacher", str(tmp_path / "teacher5")]
    out = tmp_path / "ft"
    code, _, err = cli("finetune", "fashion-deit-ti-distilled", "--from", student, "--dataset", fashion, "--out", out,
                       "--epochs", "2", "--batch-size", "16", *TINY, "--set", "compile=false", "--set", "lr=1e-3",
                       *how)
    assert code == 0, err
    assert ("both heads learn the labels" in err) != taught
    images, labels = _images(fashion)
    top1, ours = deitctl_eval(cli, out, fashion)
    plain = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=plain))
    timm_top1 = _pct(_predict(plain, images, transform), labels)
    code, _, err = cli("export", out, "--format", "transformers", "--out", tmp_path / "hf")
    assert code == 0, err
    hf = AutoModelForImageClassification.from_pretrained(str(tmp_path / "hf")).eval()
    hf_top1 = _pct(_predict(lambda x: hf(pixel_values=x).logits, images, transform), labels)
    assert abs(timm_top1 - top1) <= 0.1 and abs(hf_top1 - top1) <= 0.1, (top1, timm_top1, hf_top1)
    assert ours.unique().numel() >= 3
