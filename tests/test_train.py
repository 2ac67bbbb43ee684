"""Training end to end on the CPU: learning, the run directory, resume to the step, several processes."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# the main job's students train with Mixup/CutMix; a few tiny epochs learn too little under mixing
TINY = ["--set", "mixup=0", "--set", "cutmix=0", "--set", "model_args.depth=2", "--set", "model_args.embed_dim=32", "--set", "model_args.num_heads=2",
        "--set", "num_workers=0", "--set", "precision=fp32"]
# the synthetic quadrant data of conftest: 16 px, 1 channel, 4 classes
QUAD = [*TINY, "--set", "img_size=16", "--set", "num_classes=4", "--set", "reprob=0", "--set", "drop_path=0",
        "--set", "warmup_epochs=0.5", "--set", "lr=0.01"]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        if atol:
            assert torch.allclose(wa[k], wb[k], atol=atol), (k, (wa[k] - wb[k]).abs().max())
        else:
            assert torch.equal(wa[k], wb[k]), (k, (wa[k] - wb[k]).abs().max())


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_loss_decreases_on_fashion_mnist(cli, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = cli("train", "fashion-deit-ti", "--out", out, *TINY, "--epochs", "3", "--batch-size", "64",
                            "--set", "lr=0.016", "--set", "warmup_epochs=0", "--set", "reprob=0",
                            "--max-train-samples", "512", "--max-eval-samples", "200", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.05
    assert rows[-1]["eval"]["num_samples"] == 200
    assert rows[-1]["eval"]["top1"] > 20.0  # chance is 10
    summary = json.loads(stdout)
    assert summary["eval"] == rows[-1]["eval"]


def test_run_directory_is_a_complete_record(cli, tiny_data, tmp_path):
    import timm

    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti-distilled", "--dataset", tiny_data, "--out", out, *QUAD,
                       "--set", "distillation_type=none", "--epochs", "2", "--batch-size", "16",
                       "--set", "checkpoint_every=3", "--set", "ema=true")
    assert code == 0, err
    for name in ("recipe.yaml", "metrics.jsonl", "model.safetensors", "model_ema.safetensors", "config.json",
                 "curves.png", "summary.json", "checkpoints/latest"):
        assert (out / name).exists(), name
    assert list((out / "tb").iterdir())
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"epoch", "step", "train_loss", "lr", "img_per_s", "epoch_time_s", "data_wait_s"} <= set(row)
    assert 0 <= row["data_wait_s"] <= row["epoch_time_s"]
    assert {"top1", "top5", "loss", "num_samples", "top1_cls", "top1_dist"} <= set(row["eval"])
    model = timm.create_model(f"local-dir:{out}", pretrained=True)  # plain timm reads the run directory
    assert model.num_classes == 4 and hasattr(model, "head_dist")
    # the run is never overwritten by accident
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", out, *QUAD)
    assert code == 2 and "--resume" in err


def _quad_run(cli, data: Path, out: Path, *extra: str) -> None:
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", data, "--out", out, *QUAD, "--epochs", "2",
                       "--batch-size", "16", "--set", "checkpoint_every=1", *extra)
    assert code == 0, err


def test_resume_after_interrupt_equals_uninterrupted(cli, tiny_data, tmp_path):
    _quad_run(cli, tiny_data, tmp_path / "straight")

    def crash_at_step_6(state, loss):
        if state.global_step == 6:
            raise RuntimeError("simulated crash")
        return loss

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_in_process(tiny_data, tmp_path / "cut", crash_at_step_6)
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text().strip() == "step-0000006"
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    code, _, err = cli("train", "fashion-deit-ti", "--resume", tmp_path / "cut")
    assert code == 0, err
    assert_same_weights(tmp_path / "straight", tmp_path / "cut")
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[: len(lines)] or len(lines) == 2


def quad_options(data: Path, out: Path, resume: bool = False):
    """`_quad_run`'s command line as RunOptions (or its --resume)."""
    from deitctl.training.plan import RunOptions

    if resume:
        return RunOptions(resume=out)
    sets = [s for flag, s in itertools.pairwise(QUAD) if flag == "--set"] + ["checkpoint_every=1"]
    return RunOptions(out=out, dataset=str(data), epochs=2, batch_size=16, sets=sets)


def train_in_process(data: Path, out: Path, on_step) -> dict:
    """`_quad_run`'s command through the app layer, with a per-step hook (what the CLI cannot pass)."""
    from deitctl.app.train import TrainRequest, run

    return run(TrainRequest("fashion-deit-ti", quad_options(data, out), on_step=on_step))


def _subprocess_env(threads: int | None = None) -> dict[str, str]:
    """Same thread count as this process by default: bit-equal results need the same summation order."""
    threads = threads or torch.get_num_threads()
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).resolve().parent.parent))


def test_compiled_student_trains_like_the_eager_one(cli, tiny_data, tmp_path):
    _quad_run(cli, tiny_data, tmp_path / "eager")
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", tmp_path / "compiled", *QUAD,
                       "--epochs", "2", "--batch-size", "16", "--set", "checkpoint_every=1",
                       "--set", "compile_student=true")
    assert code == 0, err
    assert "compile teacher —, student on" in err and "torch.compile failed" not in err
    assert_same_weights(tmp_path / "eager", tmp_path / "compiled", atol=1e-3)  # fused kernels round differently


def test_speed_flags_are_recorded_as_recipe_keys(cli, tiny_data, tmp_path):
    import yaml

    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", out, *QUAD, "--epochs", "1",
                       "--batch-size", "16", "--precision", "bf16", "--no-compile", "--set", "attention=fused",
                       "--set", "fused_optimizer=false")
    assert code == 0, err
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert (recipe["precision"], recipe["compile"], recipe["compile_student"]) == ("bf16", False, False)
    assert (recipe["attention"], recipe["fused_optimizer"]) == ("fused", False)
    assert "precision bf16" in err and "attention fused" in err and "speed on CPU class" in err and "fused optimizer off" in err
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", tmp_path / "bad", *QUAD,
                       "--precision", "fp8")
    assert code == 2 and "precision" in err


def test_sigkill_between_steps_then_resume(cli, tmp_path):
    from tests.conftest import make_dataset_dict

    data = tmp_path / "data"
    make_dataset_dict(n_train=256, n_test=32).save_to_disk(str(data))
    args = ["--epochs", "2", "--batch-size", "8", "--set", "checkpoint_every=1"]
    _quad_run(cli, data, tmp_path / "straight", *args)
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti", "--dataset", str(data), "--out", str(cut),
           *QUAD, "--epochs", "2", "--batch-size", "8", "--set", "checkpoint_every=1"]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    latest = cut / "checkpoints" / "latest"
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step-0000005":
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (cut / "model.safetensors").exists(), "the run finished before it could be killed"
    code, _, err = cli("train", "fashion-deit-ti", "--resume", cut)
    assert code == 0, err
    assert_same_weights(tmp_path / "straight", cut)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(cli, tiny_data, tmp_path):
    _quad_run(cli, tiny_data, tmp_path / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "deitctl.cli", "train", "fashion-deit-ti", "--dataset", str(tiny_data), "--out",
           str(tmp_path / "two"), *QUAD, "--epochs", "2", "--batch-size", "16", "--set", "checkpoint_every=1"]
    res = subprocess.run(cmd, env=_subprocess_env(threads=1), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "processes 2 × micro-batch 8 × accumulation 1 = global batch 16" in res.stderr
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-4)
    one = json.loads((tmp_path / "one" / "summary.json").read_text())["eval"]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())["eval"]
    assert one["num_samples"] == two["num_samples"] == 32
    assert one["top1"] == pytest.approx(two["top1"], abs=100 / 32 + 1e-6)


def test_batch_plan_and_lr_rule():
    from deitctl.config.loader import load_recipe
    from deitctl.core.errors import UsageError
    from deitctl.training.plan import batch_plan
    from deitctl.training.schedule import lr_at

    assert batch_plan(1024, 8, None) == (128, 1)
    assert batch_plan(1024, 8, 64) == (64, 2)
    assert batch_plan(1024, 1, 100) == (93, 11) or batch_plan(1024, 1, 100)[0] * batch_plan(1024, 1, 100)[1] == 1024
    with pytest.raises(UsageError, match="does not split"):
        batch_plan(1000, 3, None)
    r = load_recipe("deit-b")
    assert lr_at(0, 1000, 10, r, 1e-3) == pytest.approx(1e-6)
    assert lr_at(10, 1000, 10, r, 1e-3) == pytest.approx(1e-3)
    assert lr_at(1000, 1000, 10, r, 1e-3) == pytest.approx(1e-5)


@pytest.fixture(scope="module")
def quad_teacher(tmp_path_factory, tiny_data) -> Path:
    """A small convnet teacher trained for a few steps on the quadrant data."""
    from typer.testing import CliRunner

    from deitctl.cli import app

    out = tmp_path_factory.mktemp("teacher") / "run"
    args = ["train", "fashion-teacher", "--dataset", str(tiny_data), "--out", str(out), "--set", "num_workers=0",
            "--set", "precision=fp32", "--set", "img_size=16", "--epochs", "1", "--batch-size", "16",
            "--set", "model=resnet10t"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_distillation_runs_with_a_run_directory_teacher(cli, tiny_data, tmp_path, quad_teacher, mode):
    recipe = "fashion-deit-ti-soft" if mode == "soft" else "fashion-deit-ti-distilled"
    out = tmp_path / mode
    code, _, err = cli("train", recipe, "--dataset", tiny_data, "--out", out, *QUAD, "--teacher", quad_teacher,
                       "--epochs", "1", "--batch-size", "16")
    assert code == 0, err
    run_eval = json.loads((out / "summary.json").read_text())["eval"]
    if mode == "hard":  # DeiT⚗: both heads and their fusion
        assert {"top1", "top1_cls", "top1_dist"} <= set(run_eval)
    else:  # soft on the class token of a student without a distillation token: one head
        assert "top1" in run_eval and "top1_dist" not in run_eval
    assert f"distillation {mode} from {quad_teacher}" in err
    if mode == "hard":  # teacher_precision auto: hard labels from an fp32 teacher
        assert "(teacher fp32)" in err
    # compile: auto compiles the teacher in the formats where that measured faster on this machine class
    from deitctl.runtime.rules import resolve_compile_frozen

    teacher_precision = "fp32" if mode == "hard" else re.search(r"precision (\w+)", err).group(1)
    compiled = resolve_compile_frozen("auto", teacher_precision, torch.device("cpu"))
    assert f"compile teacher {'on' if compiled else 'off'} ({teacher_precision})" in err
    assert "torch.compile failed" not in err


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_distillation_into_students_without_a_distillation_token(cli, tiny_data, tmp_path, quad_teacher, mode):
    """Table 3's "usual" and "hard distillation" rows: the teacher term on the class token — and on a convnet."""
    convnet = ["--set", "model=resnet10t", "--set", "model_args={}", "--set", "drop_path=0"]
    for name, recipe, extra in (("vit", "fashion-deit-ti", QUAD), ("convnet", "fashion-deit-ti", [*QUAD, *convnet])):
        out = tmp_path / f"{mode}-{name}"
        code, _, err = cli("train", recipe, "--dataset", tiny_data, "--out", out, *extra, "--teacher",
                           quad_teacher, "--set", f"distillation_type={mode}", "--epochs", "1", "--batch-size", "16")
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["distillation_type"] == mode and "top1_cls" not in summary["eval"]
        assert f"distillation {mode} from {quad_teacher}" in err


def test_teacher_with_other_classes_is_refused(cli, tiny_data, tmp_path):
    from deitctl.models.store import save_model_dir
    from tests.conftest import make_tiny_model

    teacher = tmp_path / "teacher7"
    save_model_dir(make_tiny_model(num_classes=7), teacher, mean=(0.5,), std=(0.5,))
    code, _, err = cli("train", "fashion-deit-ti-distilled", "--dataset", tiny_data, "--out", tmp_path / "s",
                       *QUAD, "--teacher", teacher, "--epochs", "1", "--batch-size", "16")
    assert code == 2
    assert "predicts 7 classes but the dataset has 4" in err


def test_finetune_new_resolution_and_classes(cli, tiny_data, tiny_distilled_dir, tmp_path):
    out = tmp_path / "ft"
    code, _, err = cli("finetune", "fashion-deit-ti-distilled", "--from", tiny_distilled_dir, "--dataset", tiny_data,
                       "--img-size", "32", "--out", out, *QUAD[:-6], "--set", "distillation_type=none",
                       "--epochs", "1", "--batch-size", "16")
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_args"]["img_size"] in (32, [32, 32])
    assert cfg["model_args"]["depth"] == 2 and cfg["num_classes"] == 4
    w = weights(out)
    assert w["pos_embed"].shape == (1, 2 + 8 * 8, 32)  # class + distillation tokens, 8×8 grid of 4-px patches


def test_finetune_picks_transfer_recipe_by_dataset(cli):
    code, _, err = cli("finetune", "--dataset", "no-such-set", "--from", "x")
    assert code == 2 and "no transfer recipe for dataset 'no-such-set'" in err


def test_convnet_run_records_its_training_resolution(quad_teacher):
    from deitctl.models.refs import load_model

    cfg = json.loads((quad_teacher / "config.json").read_text())["pretrained_cfg"]
    assert cfg["input_size"] == [1, 16, 16] and "test_input_size" not in cfg
    assert load_model(str(quad_teacher)).data_config["input_size"] == (1, 16, 16)


def test_no_weight_decay_on_embeddings_tokens_norms_biases():
    from deitctl.config.loader import load_recipe
    from deitctl.training.optim import make_optimizer
    from tests.conftest import make_tiny_model

    model = make_tiny_model(distilled=True)
    opt = make_optimizer(model, load_recipe("deit-ti-distilled"), 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {"pos_embed", "cls_token", "dist_token", "norm.weight", "norm.bias", "head.bias"} <= no_decay
    assert {"blocks.0.attn.qkv.weight", "head.weight", "head_dist.weight", "patch_embed.proj.weight"} <= decay
    assert all(g["weight_decay"] in (0.0, 0.05) for g in opt.param_groups)
    assert type(opt).__name__ == "AdamW" and opt.defaults["eps"] == 1e-8


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    from deitctl.core.errors import DeitctlError

    calls = {"n": 0}

    def nan_on_fourth_batch(state, loss):
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 4 else loss

    out = tmp_path / "run"
    with pytest.raises(DeitctlError) as raised:
        train_in_process(tiny_data, out, nan_on_fourth_batch)
    code, err = raised.value.exit_code, str(raised.value)
    assert code == 1
    assert "non-finite loss at epoch 1 step 4" in err and "--resume" in err
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-0000003"
    assert not (out / "model.safetensors").exists()
