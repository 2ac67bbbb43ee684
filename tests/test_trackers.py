"""Experiment trackers (``--report-to``, recipe key ``report_to``) through accelerate's: what lands in each.

A training run reports to TensorBoard and MLflow's file store (no server) at once; both must hold the run's
hyper-parameters and the loss of every optimizer step, equal to what metrics.jsonl records. W&B runs offline
(``WANDB_MODE=offline``) where the package is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import QUAD

RUN = [*QUAD, "--epochs", "2", "--batch-size", "16", "--set", "compile=false"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_and_mlflow_get_hyperparameters_and_every_step(cli, tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="needs deitctl[mlflow]")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "trackers-test")
    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", out, *RUN,
                       "--report-to", "tensorboard,mlflow")
    assert code == 0, err
    rows = _rows(out)
    steps = [(int(s), loss) for row in rows for s, loss in row["step_losses"]]
    assert [s for s, _ in steps] == list(range(1, 9))  # 64 images / 16 a step × 2 epochs
    assert "report_to:\n- tensorboard\n- mlflow" in (out / "recipe.yaml").read_text()

    client = MlflowClient(tracking_uri=store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("trackers-test").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["lr"] == "0.01" and params["batch_size"] == "16" and params["model_args.depth"] == "2"
    assert params["report_to"] == "['tensorboard', 'mlflow']"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/step_loss"))
    assert [s for s, _ in history] == [s for s, _ in steps]
    assert [v for _, v in history] == pytest.approx([loss for _, loss in steps])
    assert run.data.metrics["eval/top1"] == pytest.approx(rows[-1]["eval"]["top1"])
    assert run.data.metrics["train/train_loss"] == pytest.approx(rows[-1]["train_loss"])

    events = EventAccumulator(str(out / "tb"))  # TensorBoard, as before: its event file directly in RUN/tb
    events.Reload()
    tb = events.Scalars("train/step_loss")
    assert [e.step for e in tb] == [s for s, _ in steps]
    assert [e.value for e in tb] == pytest.approx([loss for _, loss in steps])
    assert [e.step for e in events.Scalars("eval/top1")] == [4, 8]
    assert {"train/train_loss", "train/lr", "train/img_per_s"} <= set(events.Tags()["scalars"])
    assert any(p.name == "hparams.yml" for p in (out / "tb").rglob("*"))  # the hyper-parameters, for HParams


def _run_dir(tmp_path: Path, report_to: list[str]) -> Path:
    """A run directory as training leaves it before the first epoch: its recipe names the trackers."""
    import yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump({"model": "deit_tiny_patch16_224", "lr": 0.001,
                                                     "model_args": {"depth": 2}, "report_to": report_to}))
    return run


ROW = {"epoch": 1, "step": 2, "train_loss": 1.5, "lr": 0.001, "img_per_s": 10.0, "epoch_time_s": 1.0,
       "step_losses": [[1, 1.75], [2, 1.25]], "eval": {"top1": 50.0}}


def test_report_to_none_writes_no_tracker_files_but_the_record(tmp_path):
    from deitctl.records.rundir import RunDir
    from deitctl.records.runlog import RunLog

    run = _run_dir(tmp_path, ["none"])
    log = RunLog(RunDir(run), enabled=True)
    log.add_epoch(dict(ROW))
    log.close()
    assert not (run / "tb").exists() and not (run / "wandb").exists()
    assert (run / "metrics.jsonl").is_file() and (run / "curves.png").is_file()


def test_wandb_offline_keeps_the_run_on_disk(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="needs deitctl[wandb]")
    from deitctl.records.rundir import RunDir
    from deitctl.records.runlog import RunLog

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = _run_dir(tmp_path, ["wandb"])
    log = RunLog(RunDir(run), enabled=True)
    log.add_epoch(dict(ROW))
    log.close()
    (offline,) = (run / "wandb").glob("offline-run-*")  # what `wandb sync` uploads later
    (record,) = offline.glob("run-*.wandb")
    data = record.read_bytes()
    assert b"model_args.depth" in data and b"train/step_loss" in data and b"eval/top1" in data


def test_a_tracker_not_installed_is_one_line_before_the_run_starts(cli, tiny_data, tmp_path, monkeypatch):
    from deitctl.core.errors import UsageError
    from deitctl.records import runlog

    monkeypatch.setattr(runlog, "_installed", lambda module: module != "wandb")
    out = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", out, *RUN, "--report-to", "wandb")
    assert code == 2 and "pip install 'deitctl[wandb]'" in err and "\n" not in err.strip()
    assert not out.exists()  # nothing written
    assert runlog.resolve_report_to(["all"]) == ["tensorboard", "mlflow"]  # all: the trackers installed
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow's own default then: sqlite, not in the client
    monkeypatch.setattr(runlog, "_installed", lambda module: module not in ("wandb", "sqlalchemy"))
    with pytest.raises(UsageError, match="set MLFLOW_TRACKING_URI to a tracking server"):
        runlog.resolve_report_to(["mlflow"])
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", out, *RUN,
                       "--report-to", "none,mlflow")
    assert code == 2 and "'none' reports to no tracker" in err and not out.exists()
