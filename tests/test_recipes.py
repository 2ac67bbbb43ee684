"""Recipes: Table 9 fidelity, inheritance, validation and --set overrides."""

from __future__ import annotations

import json

import pytest

from deitctl.config.loader import load_recipe, public_recipes
from deitctl.core.errors import UsageError

TABLE9 = {
    "epochs": 300, "batch_size": 1024, "optimizer": "adamw", "opt_eps": 1e-8, "lr": 5e-4, "lr_base_batch": 512,
    "weight_decay": 0.05, "scheduler": "cosine", "warmup_epochs": 5, "warmup_lr": 1e-6, "min_lr": 1e-5,
    "label_smoothing": 0.1, "drop": 0.0, "drop_path": 0.1, "clip_grad": None, "repeated_aug": 3,
    "rand_augment": "rand-m9-mstd0.5-inc1", "train_interpolation": "bicubic", "mixup": 0.8, "cutmix": 1.0,
    "mixup_switch_prob": 0.5, "reprob": 0.25, "remode": "pixel", "recount": 1, "img_size": 224,
    "dataset": "imagenet-1k",
}
REQUIRED = {
    "deit-ti", "deit-s", "deit-b", "deit-ti-distilled", "deit-s-distilled", "deit-b-distilled", "deit-b-384",
    "deit-b-distilled-384", "cifar10", "cifar100", "flowers102", "stanford-cars", "inat18", "inat19",
    "fashion-teacher", "fashion-deit-ti", "fashion-deit-ti-soft", "fashion-deit-ti-hard", "fashion-deit-ti-distilled",
}


def test_required_recipes_exist():
    assert REQUIRED <= set(public_recipes())


@pytest.mark.parametrize("size", ["ti", "s", "b"])
@pytest.mark.parametrize("distilled", [False, True])
def test_table9_exact(size, distilled):
    r = load_recipe(f"deit-{size}" + ("-distilled" if distilled else ""))
    for key, value in TABLE9.items():
        assert getattr(r, key) == value, key
    assert r.effective_lr == pytest.approx(1e-3)  # 5e-4 × 1024 / 512
    arch = {"ti": "tiny", "s": "small", "b": "base"}[size]
    if distilled:
        assert r.model == f"deit_{arch}_distilled_patch16_224"
        assert (r.distillation_type, r.teacher, r.distillation_alpha) == ("hard", "regnety_160.deit_in1k", 0.5)
    else:
        assert r.model == f"deit_{arch}_patch16_224"
        assert r.distillation_type == "none"


def test_384_finetune_recipes():
    for name, dist in (("deit-b-384", "none"), ("deit-b-distilled-384", "hard")):
        r = load_recipe(name)
        assert (r.img_size, r.epochs, r.lr, r.batch_size, r.weight_decay, r.min_lr) == (384, 30, 5e-6, 512, 1e-8, 5e-6)
        assert r.distillation_type == dist


def test_transfer_recipes():
    for name in ("cifar10", "cifar100", "flowers102", "stanford-cars"):
        r = load_recipe(name)
        assert (r.dataset, r.optimizer, r.effective_lr, r.batch_size, r.weight_decay) == (name, "sgd", 0.01, 768, 1e-4)
        assert (r.reprob, r.drop_path) == (0.0, 0.0)
    for name in ("inat18", "inat19"):
        r = load_recipe(name)
        assert (r.effective_lr, r.batch_size, r.epochs, r.reprob) == (7.5e-5, 768, 360, 0.1)


def test_fashion_recipes():
    t = load_recipe("fashion-teacher")
    assert (t.dataset, t.in_chans, t.num_classes, t.img_size) == ("fashion-mnist", 1, 10, 28)
    soft, hard = load_recipe("fashion-deit-ti-soft"), load_recipe("fashion-deit-ti-distilled")
    assert (soft.distillation_type, soft.distillation_tau, soft.distillation_alpha) == ("soft", 3.0, 0.1)
    assert (hard.distillation_type, hard.distillation_alpha) == ("hard", 0.5)
    assert soft.teacher == hard.teacher == "runs/fashion-teacher"


def test_set_overrides_are_typed():
    r = load_recipe("deit-ti", ["lr=1e-3", "epochs=7", "clip_grad=null", "model_args.depth=2", "ema=true"])
    assert (r.lr, r.epochs, r.clip_grad, r.model_args, r.ema) == (1e-3, 7, None, {"depth": 2}, True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lrr=1"], "bad --set key 'lrr' (did you mean: lr?)"),
        (["lr=abc"], "key 'lr'"),
        (["epochs"], "expected key=value"),
        (["optimizer=lamb"], "key 'optimizer'"),
        (["epochs.x=1"], "only model_args takes dotted sub-keys"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(UsageError, match=None) as err:
        load_recipe("deit-ti", overrides)
    assert message in str(err.value)


def test_bad_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DEITCTL_RECIPES", str(tmp_path))
    (tmp_path / "broken.yaml").write_text("base: deit-b\nlr: [1\n")
    (tmp_path / "typo.yaml").write_text("base: deit-b\nwieght_decay: 1\n")
    (tmp_path / "orphan.yaml").write_text("base: no-such-base\n")
    (tmp_path / "loop.yaml").write_text("base: loop\nmodel: x\n")
    (tmp_path / "mine.yaml").write_text("base: deit-s\nepochs: 3\n")
    expected = {
        "broken": "malformed YAML",
        "typo": "unknown key 'wieght_decay' (did you mean: weight_decay",
        "orphan": "unknown recipe 'no-such-base'",
        "loop": "inheritance cycle",
    }
    for name, msg in expected.items():
        with pytest.raises(UsageError) as err:
            load_recipe(name)
        assert msg in str(err.value) and f"{name}.yaml" in str(err.value)
    assert load_recipe("mine").epochs == 3 and load_recipe("mine").model == "deit_small_patch16_224"


def test_cli_show_json_keys(cli):
    code, out, _ = cli("recipes", "show", "deit-b-distilled", "--json")
    assert code == 0
    data = json.loads(out)
    keys = {"model", "img_size", "epochs", "batch_size", "optimizer", "lr", "lr_base_batch", "weight_decay",
            "scheduler", "warmup_epochs", "warmup_lr", "min_lr", "label_smoothing", "drop", "drop_path",
            "clip_grad", "rand_augment", "mixup", "cutmix", "mixup_switch_prob", "reprob", "remode",
            "repeated_aug", "distillation_type", "teacher", "distillation_alpha", "distillation_tau", "dataset"}
    assert keys <= set(data)
    assert data["teacher"] == "regnety_160.deit_in1k"


def test_cli_list_and_errors(cli):
    code, out, _ = cli("recipes", "list", "--json")
    assert code == 0 and REQUIRED <= {r["name"] for r in json.loads(out)}
    code, _, err = cli("recipes", "show", "deit-tii")
    assert code == 2 and "did you mean: deit-ti" in err and "\n" not in err.strip()
    code, _, err = cli("recipes", "show", "deit-ti", "--set", "lr=abc")
    assert code == 2 and "key 'lr'" in err


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "flowers102", "stanford-cars"])
def test_distilled_transfer_recipes_keep_the_distillation_token(dataset):
    plain, distilled = load_recipe(dataset), load_recipe(f"{dataset}-distilled")
    assert distilled.model == "deit_base_distilled_patch16_224" and distilled.distillation_type == "hard"
    assert distilled.init_from == "deit_base_distilled_patch16_224.fb_in1k" and distilled.teacher is None
    for key in ("dataset", "optimizer", "lr", "batch_size", "weight_decay", "epochs", "reprob", "drop_path"):
        assert getattr(distilled, key) == getattr(plain, key), key


def test_distilled_transfer_without_teacher_says_how_to_get_one(cli):
    code, _, err = cli("finetune", "cifar10-distilled", "--dataset", "cifar10")
    assert code == 2 and "distillation needs a teacher: pass --teacher" in err
