"""Run directories and hubs under concurrency, kills and full disks: one writer, complete checkpoints, one-line errors."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import make_dataset_dict
from test_train import QUAD, _subprocess_env, assert_same_weights, quad_options

PHASES = ("rng", "weights-torn", "state", "fsync", "rename", "latest", "prune")


# ----------------------------------------------------------------------------------- one writer
def _hold_like_a_live_run(run: Path):
    """The lock exactly as a live `deitctl train` holds it (another open file: flock refuses us too)."""
    from deitctl.records.rundir import RunDir

    return RunDir(run).lock("deitctl train").acquire()


def test_a_live_run_refuses_overwrite_and_resume(cli, tiny_data, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", run, *QUAD, "--epochs", "1",
                       "--batch-size", "16")
    assert code == 0, err
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    live = _hold_like_a_live_run(run)
    try:
        for extra in (["--out", run, "--overwrite"], ["--resume", run], ["--out", run]):
            code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, *QUAD, "--epochs", "1",
                               "--batch-size", "16", *extra)
            assert code == 2, err
            assert f"{run} is in use by pid {os.getpid()} on " in err and "since" in err and "\n" not in err.strip()
    finally:
        live.release()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing renamed, nothing written
    assert not list(tmp_path.glob("run.old-*"))
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", run, *QUAD, "--epochs", "1",
                       "--batch-size", "16", "--overwrite")
    assert code == 0, err  # released: the next writer may go
    assert len(list(tmp_path.glob("run.old-*"))) == 1


def test_a_second_process_is_refused_while_training_runs(tiny_data, tmp_path, cli):
    """A real concurrent `deitctl train`: the second command exits 2 naming it, and the live run finishes intact."""
    data = tmp_path / "data"
    make_dataset_dict(n_train=512, n_test=32).save_to_disk(str(data))
    run = tmp_path / "live"
    cmd = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti", "--dataset", str(data), "--out", str(run),
           *QUAD, "--epochs", "3", "--batch-size", "8", "--set", "checkpoint_every=1"]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "latest").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        code, _, err = cli("train", "fashion-deit-ti", "--resume", run)
        assert code == 2 and f"is in use by pid {proc.pid} on " in err
        code, _, err = cli("train", "fashion-deit-ti", "--dataset", data, "--out", run, *QUAD, "--overwrite")
        assert code == 2 and f"is in use by pid {proc.pid}" in err
    finally:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    assert (run / "model.safetensors").is_file() and not list(tmp_path.glob("live.old-*"))


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    from deitctl.core.lock import FileLock

    gone = subprocess.Popen(["true"])
    gone.wait()
    lock_file = tmp_path / ".deitctl.lock"
    straggler = FileLock(lock_file, "deitctl train").acquire()  # e.g. a forked worker outliving its run
    lock_file.write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename, "since": "x", "purpose": "y"}))
    try:
        with FileLock(lock_file, "deitctl train") as taken:
            assert taken.held and taken.holder()["pid"] == os.getpid()
    finally:
        straggler.release()


def test_concurrent_pushes_to_a_directory_hub_each_land(tmp_path, tiny_model_dir):
    """8 threads push 8 different files to one branch: 8 commits, chained, none lost, every one complete."""
    from deitctl.hub.directory import DirRemote

    hub = tmp_path / "hub"
    hub.mkdir()
    sources = []
    for i in range(8):
        note = tmp_path / f"note{i}.txt"
        note.write_text(f"push {i}\n")
        sources.append(note)
    results, errors = [], []

    def push(i: int) -> None:
        try:
            files = {"config.json": tiny_model_dir / "config.json", f"note{i}.txt": sources[i]}
            results.append(DirRemote(hub).commit("org/m", files, f"push {i}", None, False))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({r.commit for r in results}) == 8
    head = (hub / "org/m/refs/main").read_text().strip()
    chain = []
    while head:
        manifest = json.loads((hub / "org/m/commits" / head / "manifest.json").read_text())
        assert all((hub / "org/m/commits" / head / name).is_file() for name in manifest["files"])
        chain.append(head)
        head = manifest["parent"]
    assert set(chain) == {r.commit for r in results}  # one line of history holds every push
    final = json.loads((hub / "org/m/commits" / chain[0] / "manifest.json").read_text())["files"]
    assert {f"note{i}.txt" for i in range(8)} <= set(final)


# ------------------------------------------------------------------------------------ full disks
def _fail_nth(n: int, error: BaseException):
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        return real(*args, **kwargs)

    import safetensors.torch

    real = safetensors.torch.save_file
    return fake


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 64")])
def test_disk_full_during_a_checkpoint_keeps_the_last_one_and_resumes_identically(
        cli, tiny_data, tmp_path, monkeypatch, error):
    import safetensors.torch

    from deitctl.app.train import TrainRequest, run
    from deitctl.core.atomic import DiskFullError

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    run(TrainRequest("fashion-deit-ti", quad_options(tiny_data, straight)))
    monkeypatch.setattr(safetensors.torch, "save_file", _fail_nth(3, error))
    with pytest.raises(DiskFullError) as raised:
        run(TrainRequest("fashion-deit-ti", quad_options(tiny_data, cut)))
    message = str(raised.value)
    assert message.startswith(f"no space left on the device writing {cut}/checkpoints/.tmp-step-0000003: it needs ")
    assert " free; the last complete checkpoint is kept in " in message and f"--resume {cut}" in message
    assert (cut / "checkpoints" / "latest").read_text().strip() == "step-0000002"
    assert not list((cut / "checkpoints").glob(".tmp-*")) and not list(cut.rglob(".*.tmp"))
    monkeypatch.undo()
    run(TrainRequest(None, quad_options(tiny_data, cut, resume=True)))
    assert_same_weights(straight, cut)


def test_disk_full_in_export_report_and_pull_is_one_line_and_leaves_nothing(cli, tiny_model_dir, tmp_path,
                                                                            monkeypatch):
    import pathlib

    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(safetensors.torch, "save_file", full)
        code, _, err = cli("export", tiny_model_dir, "--format", "safetensors", "--out", tmp_path / "exp")
    assert code == 1 and err.startswith(f"error: no space left on the device writing {tmp_path / 'exp'}/model.safetensors"
                                        ": it needs ") and " free; " in err and "\n" not in err.strip()
    assert not (tmp_path / "exp").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]

    hub = tmp_path / "hub"
    hub.mkdir()
    assert cli("push", tiny_model_dir, "org/m", "--hub-dir", hub)[0] == 0
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", full)
        code, _, err = cli("pull", "org/m", "--hub-dir", hub)
    assert code == 1 and err.startswith("error: no space left on the device writing ") and "needs" in err

    from test_report import make_run

    run = make_run(tmp_path / "runs", "a-run")
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_bytes", full)
        code, _, err = cli("report", run, "--out", tmp_path / "r.md")
    assert code == 1 and err.startswith(f"error: no space left on the device writing {tmp_path}/r.") and "needs" in err
    assert not list(tmp_path.glob(".r.*"))


def _unshare_works() -> bool:
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs user and mount namespaces for a size-limited tmpfs")
def test_a_real_full_tmpfs_then_resume_after_freeing_space(tiny_data, tmp_path, cli):
    """A 900 KiB tmpfs holds two checkpoints but not a third: the run stops with one line, exit 1; remounted
    larger (space freed), --resume finishes bit-identical to an uninterrupted run."""
    straight = tmp_path / "straight"
    code, _, err = cli("train", "fashion-deit-ti", "--dataset", tiny_data, "--out", straight, *QUAD, "--epochs", "2",
                       "--batch-size", "16", "--set", "checkpoint_every=1")
    assert code == 0, err
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    train = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti", "--dataset", str(tiny_data), "--out",
             f"{mnt}/run", *QUAD, "--epochs", "2", "--batch-size", "16", "--set", "checkpoint_every=1"]
    script = f"""
mount -t tmpfs -o size=900k tmpfs {mnt}
{' '.join(train)} 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc
cp -r {mnt}/run {tmp_path}/after-full
mount -o remount,size=64m {mnt}
{sys.executable} -m deitctl.cli train fashion-deit-ti --resume {mnt}/run 2> {tmp_path}/second.err
echo $? > {tmp_path}/second.rc
cp -r {mnt}/run {out}
"""
    subprocess.run(["unshare", "-rm", "sh", "-c", script], env=_subprocess_env(), check=True, timeout=600)
    first = (tmp_path / "first.err").read_text().strip().splitlines()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first
    assert first[-1].startswith(f"error: no space left on the device writing {mnt}/run/"), first[-1]
    assert "needs" in first[-1] and "free" in first[-1]
    after = tmp_path / "after-full"
    assert (after / "checkpoints" / "latest").is_file() and not list(after.rglob(".tmp-*"))
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()[-2000:]
    assert_same_weights(straight, out)


# ------------------------------------------------------------------------------ kills mid-write
def _kill_at(phase: str, save_index: int) -> None:
    """In a child process: SIGKILL ourselves at ``phase`` of the ``save_index``-th checkpoint write."""
    import safetensors.torch

    from deitctl.training import checkpoint

    count = {"n": 0}
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
    real = {"save": checkpoint.save, "torch_save": torch.save, "save_file": safetensors.torch.save_file,
            "fsync": checkpoint.fsync_tree, "replace": checkpoint.os.replace, "write": checkpoint.write_text,
            "rmtree": checkpoint.shutil.rmtree}

    def now(name: str) -> bool:
        return count["n"] == save_index and phase == name

    def save(*a, **k):
        count["n"] += 1
        return real["save"](*a, **k)

    def torch_save(obj, path, *a, **k):
        if now("rng" if "rng-" in str(path) else "state"):
            die()
        return real["torch_save"](obj, path, *a, **k)

    def save_file(tensors, path, *a, **k):
        real["save_file"](tensors, path, *a, **k)
        if now("weights-torn"):
            os.truncate(path, os.path.getsize(path) // 2)  # a torn write: half the bytes made it
            die()

    def fsync(root):
        if now("fsync"):
            die()
        return real["fsync"](root)

    def replace(src, dst):
        real["replace"](src, dst)
        if now("rename") and ".tmp-step" in str(src):
            die()

    def write(path, *a, **k):
        real["write"](path, *a, **k)
        if now("latest") and str(path).endswith("latest"):
            die()

    def rmtree(path, *a, **k):
        real["rmtree"](path, *a, **k)
        if now("prune") and Path(path).name.startswith("step-"):
            die()

    checkpoint.save, torch.save, safetensors.torch.save_file = save, torch_save, save_file
    checkpoint.fsync_tree, checkpoint.write_text = fsync, write
    checkpoint.os.replace, checkpoint.shutil.rmtree = replace, rmtree


def _child(data: str, out: str, resume: bool, phase: str | None, save_index: int, threads: int) -> None:
    torch.set_num_threads(threads)
    from deitctl.app.train import TrainRequest, run

    if phase:
        _kill_at(phase, save_index)
    run(TrainRequest(None if resume else "fashion-deit-ti", quad_options(Path(data), Path(out), resume)))


def test_sigkill_at_20_random_moments_of_checkpoint_writes_then_resume_is_bit_identical(tiny_data, tmp_path):
    """Each kill lands inside a checkpoint write (7 phases: before the RNG file, a torn weights file, before the
    trainer state, before fsync, after the rename, after `latest` moved, while pruning); every --resume continues
    from a complete checkpoint and ends with exactly the uninterrupted run's weights: 20/20."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "timm", "accelerate", "deitctl.app.train", "test_reliability"])
    threads = torch.get_num_threads()

    def launch(out: Path, resume: bool = False, phase: str | None = None, index: int = 0) -> int:
        proc = ctx.Process(target=_child, args=(str(tiny_data), str(out), resume, phase, index, threads))
        proc.start()
        proc.join(timeout=300)
        return proc.exitcode

    assert launch(tmp_path / "straight") == 0
    rng = random.Random(1234)
    moments = [(PHASES[i % len(PHASES)], rng.randint(2, 8)) for i in range(20)]  # 8 steps: 8 checkpoints
    outcomes = []
    for k, (phase, index) in enumerate(moments):
        out = tmp_path / f"cut{k}"
        assert launch(out, phase=phase, index=index) == -signal.SIGKILL, (phase, index)
        latest = (out / "checkpoints" / "latest").read_text().strip()
        assert launch(out, resume=True) == 0, (phase, index)
        assert_same_weights(tmp_path / "straight", out)
        outcomes.append((phase, index, latest))
    assert len(outcomes) == 20 and {p for p, _, _ in outcomes} == set(PHASES)
