"""`deitctl eval` and the evaluate() loop: numbers checked against hand counts, not just exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CLASSES, make_tiny_model

# --------------------------------------------------------------------------------------- helpers


def quick_train(model, dataset_dir: Path, steps: int = 25, dist_shift: int = 1):
    """A few Adam steps so predictions vary; a distilled model's second head learns shifted labels,
    so the two heads disagree and late fusion is visible in the numbers."""
    import torch
    import torch.nn.functional as F

    from deitctl.models.inspect import is_distilled

    x, y = hand_inputs(dataset_dir, "train")
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        tokens = model.forward_features(x)
        loss = F.cross_entropy(model.head(tokens[:, 0]), y)
        if is_distilled(model):
            loss = loss + F.cross_entropy(model.head_dist(tokens[:, 1]), (y + dist_shift) % len(CLASSES))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def hand_inputs(dataset_dir: Path, split: str = "test"):
    """Images normalised by hand (mean = std = 0.5, no resize at 16 px), independent of deitctl's code."""
    import datasets
    import numpy as np
    import torch

    ds = datasets.load_from_disk(str(dataset_dir))[split]
    x = torch.stack([torch.from_numpy(np.array(img, dtype=np.float32) / 255.0) for img in ds["image"]])
    return ((x - 0.5) / 0.5)[:, None], torch.tensor(ds["label"])


def hand_logits(model, x):
    import torch

    with torch.no_grad():
        if not hasattr(model, "head_dist"):
            return model(x), None, None
        tokens = model.forward_features(x)
        cls, dist = model.head(tokens[:, 0]), model.head_dist(tokens[:, 1])
        return model(x), cls, dist


def pct_correct(logits, y) -> float:
    return 100.0 * (logits.argmax(1) == y).sum().item() / len(y)


def save(model, path: Path) -> Path:
    from deitctl.models.store import save_model_dir

    return save_model_dir(model, path, label_names=CLASSES, mean=(0.5,), std=(0.5,), crop_pct=1.0)


FP32 = ("--precision", "fp32")  # exact comparisons with hand-computed fp32 logits


def eval_json(cli, *args) -> dict:
    code, out, err = cli("eval", *args, "--num-workers", "0", "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """(plain model, its dir, distilled model, its dir), trained briefly on tiny_data."""
    root = tmp_path_factory.mktemp("trained")
    plain = quick_train(make_tiny_model(False), tiny_data)
    distilled = quick_train(make_tiny_model(True, seed=1), tiny_data)
    return plain, save(plain, root / "plain"), distilled, save(distilled, root / "distilled")


# ----------------------------------------------------------------------------- evaluate() unit


class FixedLogits:
    """A 'model' whose logits are its input, so every metric can be worked out on paper."""

    def __new__(cls):
        import torch

        class Identity(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.dummy = torch.nn.Parameter(torch.zeros(1))

            def forward(self, x):
                return x

        return Identity()


def test_evaluate_topk_loss_and_confusion_by_hand():
    import torch
    import torch.nn.functional as F

    from deitctl.evaluation.metrics import evaluate

    logits = torch.tensor([
        [9.0, 1, 2, 3, 4, 5, 0],  # label 0: top-1 hit
        [0.0, 1, 2, 3, 4, 5, 9],  # label 1: rank 6 → miss in top-5 too
        [0.0, 9, 8, 7, 6, 5, 4],  # label 2: rank 2 → top-5 hit
        [1.0, 2, 3, 4, 5, 6, 7],  # label 3: rank 4 → top-5 hit
        [0.0, 0, 0, 0, 9, 0, 0],  # label 4: top-1 hit
    ])
    labels = torch.tensor([0, 1, 2, 3, 4])
    model = FixedLogits()
    model.train()
    loader = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    out = evaluate(model, loader, per_class=True, num_classes=7)
    assert out["num_samples"] == 5
    assert out["top1"] == pytest.approx(40.0)
    assert out["top5"] == pytest.approx(80.0)
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert out["per_class_correct"][:5] == [1, 0, 0, 0, 1]
    assert out["confusion"][1][6] == 1 and out["confusion"][2][1] == 1
    assert "top1_cls" not in out
    assert model.training, "evaluate() must restore train mode for the training loop"


def test_top_k_is_capped_at_the_class_count():
    import torch

    from deitctl.evaluation.metrics import evaluate

    logits = torch.tensor([[0.0, 1, 2], [2.0, 1, 0]])
    out = evaluate(FixedLogits(), [(logits, torch.tensor([0, 0]))])
    assert (out["top1"], out["top5"]) == (50.0, 100.0)  # top-3 with 3 classes


def test_fp16_on_cpu_is_refused_by_evaluate():
    import torch

    from deitctl.core.errors import UsageError
    from deitctl.evaluation.metrics import evaluate

    with pytest.raises(UsageError, match="fp16"):
        evaluate(FixedLogits(), [(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))], precision="fp16")


def test_unlabelled_split_is_a_clear_error():
    import torch

    from deitctl.core.errors import UsageError
    from deitctl.evaluation.metrics import evaluate

    with pytest.raises(UsageError, match=r"unlabelled.*--split validation"):
        evaluate(FixedLogits(), [(torch.zeros(2, 3), torch.tensor([0, -1]))])


# --------------------------------------------------------------------------------- deitctl eval


def test_eval_matches_hand_count(cli, trained, tiny_data):
    import torch.nn.functional as F

    model, model_dir = trained[0], trained[1]
    x, y = hand_inputs(tiny_data)
    logits, _, _ = hand_logits(model, x)
    out = eval_json(cli, model_dir, "--dataset", tiny_data, "--split", "test", "--batch-size", "5", *FP32)
    assert out["num_samples"] == 32
    assert out["top1"] == pytest.approx(pct_correct(logits, y))
    assert 25.0 < out["top1"] < 100.0, "the fixture should give a non-trivial accuracy"
    assert out["top5"] == 100.0  # 4 classes: top-4
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)
    assert "top1_cls" not in out and "top1_dist" not in out


def test_distilled_late_fusion_is_the_mean_of_the_head_logits(cli, trained, tiny_data):
    import torch

    from deitctl.evaluation.metrics import head_logits

    model, model_dir = trained[2], trained[3]
    x, y = hand_inputs(tiny_data)
    timm_fused, cls, dist = hand_logits(model, x)
    assert torch.allclose(timm_fused, (cls + dist) / 2, atol=1e-6)
    with torch.no_grad():
        ours = head_logits(model, x)
    for a, b in zip(ours, ((cls + dist) / 2, cls, dist), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    out = eval_json(cli, model_dir, "--dataset", tiny_data, "--split", "test", *FP32)
    assert out["top1_cls"] == pytest.approx(pct_correct(cls, y))
    assert out["top1_dist"] == pytest.approx(pct_correct(dist, y))
    assert out["top1"] == pytest.approx(pct_correct((cls + dist) / 2, y))
    assert out["top1_cls"] != out["top1_dist"], "heads trained on different targets must disagree"


def test_run_dir_defaults_to_the_recipe_dataset_and_split(cli, trained, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    (run / "recipe.yaml").write_text(f"model: deit_tiny_patch16_224\ndataset: {tiny_data}\neval_split: test\n")
    out = eval_json(cli, run)
    assert (out["dataset"], out["split"], out["num_samples"]) == (str(tiny_data), "test", 32)
    assert out["top1"] == eval_json(cli, trained[1], "--dataset", tiny_data, "--split", "test")["top1"]


def test_ema_weights_of_a_run(cli, trained, tiny_data, tmp_path):
    from deitctl.models.store import save_model_dir
    from deitctl.models.types import EMA_WEIGHTS

    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    code, _, err = cli("eval", run, "--dataset", tiny_data, "--ema")
    assert code == 2 and "EMA" in err
    other = make_tiny_model(False, seed=7).eval()
    save_model_dir(other, run, mean=(0.5,), std=(0.5,), weights_name=EMA_WEIGHTS)
    x, y = hand_inputs(tiny_data)
    out = eval_json(cli, run, "--dataset", tiny_data, "--split", "test", "--ema", *FP32)
    assert out["top1"] == pytest.approx(pct_correct(hand_logits(other, x)[0], y))


def test_fashion_mnist_run_dir(cli, tmp_path):
    from deitctl.data import fashion_mnist

    if not fashion_mnist.idx_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    run = tmp_path / "run"
    model = make_tiny_model(img_size=28, num_classes=10).eval()
    from deitctl.models.store import save_model_dir

    save_model_dir(model, run, label_names=fashion_mnist.CLASS_NAMES, mean=(0.2860,), std=(0.3530,))
    (run / "recipe.yaml").write_text("model: deit_tiny_patch16_224\ndataset: fashion-mnist\neval_split: test\n")
    out = eval_json(cli, run, "--max-samples", "40")
    assert (out["dataset"], out["split"], out["num_samples"]) == ("fashion-mnist", "test", 40)
    assert 0.0 <= out["top1"] <= out["top5"] <= 100.0


def test_per_class_and_confusion_png(cli, trained, tiny_data, tmp_path):
    model, model_dir = trained[0], trained[1]
    x, y = hand_inputs(tiny_data)
    pred = hand_logits(model, x)[0].argmax(1)
    png = tmp_path / "plots" / "confusion.png"
    out = eval_json(cli, model_dir, "--dataset", tiny_data, "--split", "test", "--per-class", "--confusion", png, *FP32)
    for k, name in enumerate(CLASSES):
        mask = y == k
        assert out["per_class"][name] == pytest.approx(100.0 * (pred[mask] == k).sum().item() / mask.sum().item())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["confusion.png"], "no temporary files left behind"


def test_max_samples_and_bf16(cli, trained, tiny_data):
    fp32 = eval_json(cli, trained[1], "--dataset", tiny_data, "--split", "test", "--max-samples", "10", *FP32)
    bf16 = eval_json(cli, trained[1], "--dataset", tiny_data, "--split", "test", "--max-samples", "10",
                     "--precision", "bf16")
    assert fp32["num_samples"] == bf16["num_samples"] == 10
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05)


def test_default_precision_is_bf16_where_native_and_close_to_fp32(cli, trained, tiny_data):
    import torch

    from deitctl.runtime.precision import native_bf16

    model, x, y = trained[0], *hand_inputs(tiny_data)
    out = eval_json(cli, trained[1], "--dataset", tiny_data, "--split", "test")
    assert out["precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32")
    assert out["compile"] is False and out["runtime"] == "torch"
    fp32_logits = hand_logits(model, x)[0]
    with torch.no_grad():  # what the default runs: the whole model cast to bf16
        bf16_logits = model.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    model.float()
    assert (bf16_logits - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
    assert out["top1"] == pytest.approx(pct_correct(bf16_logits if out["precision"] == "bf16" else fp32_logits, y))


def test_compiled_eval_equals_eager_including_the_padded_last_batch(cli, trained, tiny_data):
    eager = eval_json(cli, trained[3], "--dataset", tiny_data, "--split", "test", "--batch-size", "6", *FP32)
    compiled = eval_json(cli, trained[3], "--dataset", tiny_data, "--split", "test", "--batch-size", "6", *FP32,
                         "--compile")  # 32 = 5 × 6 + 2: the last batch is padded to 6, not compiled again
    assert compiled["compile"] is True and compiled["num_samples"] == 32
    for key in ("top1", "top1_cls", "top1_dist", "top5"):
        assert compiled[key] == eager[key], key
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--split", "test", "--precision", "fp16"], ["fp16", "CPU"]),
        (["--split", "test", "--precision", "fp8"], ["fp8", "fp32"]),
    ],
)
def test_bad_precision(cli, trained, tiny_data, args, needles):
    code, _, err = cli("eval", trained[1], "--dataset", tiny_data, *args)
    assert code == 2 and all(n in err for n in needles), err


def test_dataset_is_required_without_a_recipe(cli, trained):
    code, _, err = cli("eval", trained[1])
    assert code == 2 and "--dataset" in err


def test_the_data_is_checked_before_the_model_loads(cli, tiny_data, tmp_path):
    """A wrong split needs no model to be refused: said even when the weights would not load."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architecture": "deit_tiny_patch16_224"}))
    (broken / "model.safetensors").write_bytes(b"not weights")
    code, _, err = cli("eval", broken, "--dataset", tiny_data, "--split", "nope")
    assert code == 2 and "no split 'nope'" in err, err


def test_class_count_mismatch(cli, tiny_data, tmp_path):
    five = save(make_tiny_model(num_classes=5), tmp_path / "five")
    five_classes = json.loads((five / "config.json").read_text())
    five_classes["label_names"] = [*CLASSES, "four"]
    (five / "config.json").write_text(json.dumps(five_classes))
    code, _, err = cli("eval", five, "--dataset", tiny_data)
    assert code == 2 and "5 classes" in err and "has 4" in err, err


# ------------------------------------------------------------------------------ several processes


def _eval_in_process(model_dir: str, data_dir: str, out_file: str) -> None:
    """Runs in each of two forked processes (accelerate's debug launcher): the CLI's code path, sharded."""
    import faulthandler

    import torch

    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails this test instead of the whole suite
    torch.set_num_threads(1)  # OpenMP's thread pool does not survive fork(): one thread, or a deadlock
    from deitctl.app.eval import EvalRequest, run

    result = run(EvalRequest(model_dir, data_dir, "test", batch_size=4, max_samples=30, per_class=True, num_workers=0))
    if result is not None:
        Path(out_file).write_text(json.dumps(result))


def test_two_processes_count_each_sample_once(trained, tiny_data, tmp_path):
    """30 samples over 2 processes × batches of 4: the sampler pads to 32; gather_for_metrics drops the pad."""
    from accelerate import debug_launcher

    from deitctl.app.eval import EvalRequest, run

    out_file = tmp_path / "result.json"
    debug_launcher(_eval_in_process, args=(str(trained[1]), str(tiny_data), str(out_file)), num_processes=2)
    sharded = json.loads(out_file.read_text())
    single = run(EvalRequest(str(trained[1]), str(tiny_data), "test", batch_size=4, max_samples=30, per_class=True,
                             num_workers=0))
    assert sharded["num_samples"] == single["num_samples"] == 30
    assert sum(sharded["per_class"].values()) == pytest.approx(sum(single["per_class"].values()))
    for key in ("top1", "top5", "loss"):
        assert sharded[key] == pytest.approx(single[key], rel=1e-5)


def test_save_keeps_eval_json_and_per_image_predictions(cli, trained, tiny_data, tmp_path):
    import shutil

    import numpy as np

    run = tmp_path / "run"
    shutil.copytree(trained[3], run)
    code, out, err = cli("eval", run, "--dataset", tiny_data, "--num-workers", "0", "--save", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert json.loads((run / "eval.json").read_text()) == result
    with np.load(run / "predictions.npz") as p:
        assert str(p["dataset"]) == str(tiny_data) and str(p["split"]) == "test"
        assert list(p["labels"]) == [i % 4 for i in range(32)]  # conftest's quadrant labels, in order
        assert 100 * (p["pred"] == p["labels"]).mean() == pytest.approx(result["top1"])
        assert 100 * (p["pred_dist"] == p["labels"]).mean() == pytest.approx(result["top1_dist"])
    code, _, err = cli("eval", "deit_tiny_patch16_224", "--dataset", tiny_data, "--save")
    assert code == 2 and "--save keeps the result in the model's directory" in err


def test_a_distilled_model_trained_without_teacher_reports_its_class_head(cli, trained, tiny_data, tmp_path):
    """`none` on a ⚗ model: the untrained distillation head is not averaged into top-1."""
    import shutil

    run = tmp_path / "none-run"
    shutil.copytree(trained[3], run)
    (run / "recipe.yaml").write_text(f"dataset: {tiny_data}\neval_split: test\ndistillation_type: none\n")
    code, out, err = cli("eval", run, "--num-workers", "0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["top1"] == result["top1_cls"]
    (run / "recipe.yaml").write_text(f"dataset: {tiny_data}\neval_split: test\ndistillation_type: hard\n")
    fused = json.loads(cli("eval", run, "--num-workers", "0", "--json")[1])
    assert fused["top1_cls"] == result["top1_cls"] and fused["loss"] != result["loss"]


def test_crop_pct_overrides_the_models_config(cli, trained, tiny_data):
    """--crop-pct 0.875 is how the authors evaluate every model; here 0.5 visibly changes the input."""
    default = eval_json(cli, trained[1], "--dataset", tiny_data, *FP32)
    half = eval_json(cli, trained[1], "--dataset", tiny_data, *FP32, "--crop-pct", "0.5")
    assert default["crop_pct"] == 1.0 and half["crop_pct"] == 0.5 and half["loss"] != default["loss"]
    code, _, err = cli("eval", trained[1], "--dataset", tiny_data, "--crop-pct", "1.5")
    assert code == 2 and "--crop-pct must be in (0, 1]" in err


def test_unreadable_weights_are_one_line(cli, tiny_model_dir, tiny_data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    for command in (["eval", broken, "--dataset", tiny_data], ["predict", broken, tmp_path]):
        code, _, err = cli(*command)
        assert code == 1 and "model.safetensors is not a readable safetensors file" in err, err
        assert "Traceback" not in err and "--debug" not in err
