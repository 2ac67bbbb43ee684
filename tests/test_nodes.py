"""More than one machine, on one box: two 1-process "machines" started by `accelerate launch --num_machines 2`
(gloo, CPU). Each machine runs in its own working directory with a relative --out, so their run directories are
on different "disks" unless the test gives an absolute path (a shared file system)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shard_data import write_parquet
from test_train import QUAD, _free_port, _subprocess_env, assert_same_weights

pytestmark = pytest.mark.slow

ARGS = [*QUAD, "--epochs", "2", "--batch-size", "8", "--set", "checkpoint_every=1"]


@pytest.fixture(scope="module")
def quad256(tmp_path_factory) -> Path:
    from tests.conftest import make_dataset_dict

    path = tmp_path_factory.mktemp("data") / "quad256"
    make_dataset_dict(n_train=256, n_test=32).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "pq"
    write_parquet(root, {"train": 4}, 64)
    write_parquet(root, {"test": 2}, 16)
    return root


def one_machine_two_processes(out: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "deitctl.cli", "train", "fashion-deit-ti", "--out", str(out), *args]
    res = subprocess.run(cmd, env=_subprocess_env(threads=1), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def two_machines(homes: list[Path], out: str, *args: str) -> list[subprocess.Popen]:
    """`accelerate launch` once per machine, each in its own working directory."""
    port, procs = _free_port(), []
    for rank, home in enumerate(homes):
        home.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "deitctl.cli", "train", "fashion-deit-ti", "--out", out, *args]
        procs.append(subprocess.Popen(cmd, cwd=home, env=_subprocess_env(threads=1), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> str:
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2500:] for e in errors)
    return errors[0]


def kill_after(procs: list[subprocess.Popen], latest: Path, step: str) -> None:
    """SIGKILL both machines once rank 0's run has checkpointed ``step``."""
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if latest.is_file() and latest.read_text().strip() >= step:
            break
        time.sleep(0.02)
    import psutil

    for p in procs:  # the launcher and the training process it started (torchrun puts it in a session of its own)
        tree = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
        for proc in tree:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=30)
        p.wait()
    assert not (latest.parent.parent / "model.safetensors").exists(), "the run finished before it could be killed"


def test_folder_data_on_two_machines_with_their_own_disks(quad256, tmp_path):
    data = ["--dataset", str(quad256), *ARGS]
    one_machine_two_processes(tmp_path / "one", *data)
    homes = [tmp_path / "m0", tmp_path / "m1"]
    procs = two_machines(homes, "runs/x", *data)
    kill_after(procs, homes[0] / "runs/x/checkpoints/latest", "step-0000005")
    err = finish(two_machines(homes, "runs/x", "--resume", "runs/x"))
    assert "resuming at epoch 1" in err
    assert_same_weights(tmp_path / "one", homes[0] / "runs/x", atol=1e-4)
    # rank 0 writes the run; the other machine keeps only what it needs to resume: recipe, options, checkpoints
    assert {p.name for p in (homes[1] / "runs/x").iterdir()} == {"recipe.yaml", "run.json", "checkpoints"}
    assert {p.name for p in (homes[1] / "runs/x/checkpoints").glob("step-*/*")} == {"model.safetensors", "state.pt",
                                                                                   "rng-1.pt"}
    assert not list((homes[0] / "runs/x/checkpoints").glob("step-*/rng-1.pt"))


def test_streamed_data_on_two_machines_sharing_a_disk(shards, tmp_path):
    data = ["--dataset", str(shards), "--streaming", "--set", "shuffle_buffer=16", *ARGS]
    one_machine_two_processes(tmp_path / "one", *data)
    homes, run = [tmp_path / "m0", tmp_path / "m1"], tmp_path / "shared-run"
    kill_after(two_machines(homes, str(run), *data), run / "checkpoints/latest", "step-0000005")
    finish(two_machines(homes, str(run), "--resume", str(run)))
    assert_same_weights(tmp_path / "one", run, atol=1e-4)
    step = sorted(run.glob("checkpoints/step-*"))[-1]
    assert {p.name for p in step.iterdir()} >= {"rng-0.pt", "rng-1.pt", "stream-0.pt", "stream-1.pt"}
    assert not (homes[1] / str(run).lstrip("/")).exists() and not any(homes[1].iterdir())
