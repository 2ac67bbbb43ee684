"""Fine-tuning as users do it: records that name the model fine-tuned, the same weights whether the starting model
was downloaded by the run or cached, refusals before anything is written, and what the header tells."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from test_train import QUAD, assert_same_weights

SMALL = ["--epochs", "1", "--batch-size", "16", "--set", "compile=false"]


def finetune(cli, data: Path, start: str | Path, out: Path, *extra: str):
    return cli("finetune", "fashion-deit-ti", "--from", start, "--dataset", data, "--out", out, *QUAD, *SMALL, *extra)


def test_records_name_the_architecture_fine_tuned(cli, tiny_data, tiny_distilled_dir, tmp_path):
    out = tmp_path / "run"
    code, _, err = finetune(cli, tiny_data, tiny_distilled_dir, out)
    assert code == 0, err
    assert "deit_tiny_distilled_patch16_224 (" in err and "deit_tiny_patch16_224 (" not in err  # the header
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["model"] == "deit_tiny_distilled_patch16_224"
    assert {k: recipe["model_args"][k] for k in ("depth", "embed_dim", "num_heads")} == {"depth": 2, "embed_dim": 32,
                                                                                        "num_heads": 2}
    (tmp_path / "hub").mkdir()
    code, _, err = cli("push", out, "team/ft", "--hub-dir", tmp_path / "hub")
    assert code == 0, err
    card = next((tmp_path / "hub").rglob("README.md")).read_text()
    assert "deit_tiny_distilled_patch16_224" in card and "deit_tiny_patch16_224`" not in card


def test_same_seed_same_weights_whether_the_model_was_downloaded_or_cached(cli, tiny_data, tiny_distilled_dir,
                                                                           tmp_path, monkeypatch):
    monkeypatch.delenv("DEITCTL_HUB_DIR", raising=False)
    hub = tmp_path / "hub"
    hub.mkdir()
    assert cli("push", tiny_distilled_dir, "team/start", "--hub-dir", hub)[0] == 0
    monkeypatch.setenv("DEITCTL_HUB_DIR", str(hub))
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))  # nothing pulled yet: the first run downloads
    code, _, err = finetune(cli, tiny_data, "team/start", tmp_path / "downloaded")
    assert code == 0, err
    assert list((tmp_path / "cache").rglob("model.safetensors"))
    code, _, err = finetune(cli, tiny_data, "team/start", tmp_path / "cached")
    assert code == 0, err
    assert_same_weights(tmp_path / "downloaded", tmp_path / "cached")


def test_a_batch_larger_than_the_data_is_refused_before_anything_is_written(cli, tiny_data, tiny_distilled_dir,
                                                                           tmp_path):
    out = tmp_path / "run"
    code, _, err = finetune(cli, tiny_data, tiny_distilled_dir, out, "--max-train-samples", "10")
    assert code == 2 and "10 training samples make no full batch of 16" in err and not out.exists()


def test_the_header_says_how_many_workers_and_that_warm_up_lasts_the_run(cli, tiny_data, tiny_distilled_dir,
                                                                         tmp_path):
    cores = len(os.sched_getaffinity(0))
    code, _, err = finetune(cli, tiny_data, tiny_distilled_dir, tmp_path / "run", "--set", "num_workers=64",
                            "--set", "warmup_epochs=5")
    assert code == 0, err
    assert f"data workers {cores} (recipe 64; {cores} cores)" in err
    assert "worker processes in total" not in err  # torch's warning about more workers than cores
    assert "the lr warm-up (5 epochs) lasts the whole run (1 epoch)" in err


@pytest.mark.parametrize(("recorded", "learned"), [({"distillation_type": "none"}, False),
                                                   ({"distillation_type": "none", "label_both_heads": False}, False),
                                                   ({"distillation_type": "none", "label_both_heads": True}, True),
                                                   ({"distillation_type": "hard"}, True)])
def test_whether_a_distillation_head_learned_reads_old_and_new_records(recorded, learned):
    from deitctl.records.rundir import distillation_head_learned

    assert distillation_head_learned(recorded) is learned  # runs from before label_both_heads: the class head alone
