"""`deitctl train --dataset ORG/NAME --streaming`: a Hub dataset streamed through the real `datasets` and
`huggingface_hub` clients from tests/hub_server.py — byte ranges read as trained on, nothing copied into the cache."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import CLASSES
from hub_server import Handler, HubServer
from test_train import QUAD, _subprocess_env

REPO = "org/quad"
TRAIN = [*QUAD, "--epochs", "1", "--batch-size", "16", "--set", "num_workers=2"]
SHARD_BYTES = "6000"  # tiny_data's 64 train / 32 test images → 4 train and 2 test parquet shards


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """This test's environment, online: its own HF_HOME, datasets cache and deitctl cache under tmp_path."""
    from huggingface_hub import constants

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "DEITCTL_HUB_DIR"):
        monkeypatch.delenv(key, raising=False)
    env = {"HF_HOME": tmp_path / "hf", "HF_DATASETS_CACHE": tmp_path / "hf-datasets", "DEITCTL_CACHE": tmp_path / "cache",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_TOKEN": "hf_dummy_token"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import: the in-process upload needs it off
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return monkeypatch


def train(out: Path) -> subprocess.CompletedProcess:
    """The training command in a fresh process: HF_ENDPOINT must be set before `datasets` is imported."""
    cmd = [sys.executable, "-m", "deitctl.cli", "train", "fashion-deit-ti", "--dataset", REPO, "--streaming",
           "--out", str(out), *TRAIN]
    return subprocess.run(cmd, env=_subprocess_env(), capture_output=True, text=True, timeout=240)


def test_streamed_training_reads_byte_ranges_of_the_hub_dataset(cli, hub_env, tiny_data, tmp_path):
    from huggingface_hub import HfApi

    shards = tmp_path / "shards"
    code, _, err = cli("data", "convert", tiny_data, shards, "--format", "parquet", "--shard-size", SHARD_BYTES)
    assert code == 0, err
    parquet = sorted(p.name for p in shards.glob("*.parquet"))
    assert [p.split("-")[0] for p in parquet] == ["test"] * 2 + ["train"] * 4, parquet

    with HubServer() as hub:
        hub_env.setenv("HF_ENDPOINT", hub.url)
        api = HfApi(endpoint=hub.url)
        api.create_repo(REPO, repo_type="dataset")
        api.upload_folder(folder_path=shards, repo_id=REPO, repo_type="dataset", ignore_patterns=[".*"])
        repo = hub.state.repos[f"datasets/{REPO}"]
        assert sorted(repo.commits[repo.branches["main"]]) == [".gitattributes", "README.md", *parquet]
        uploaded = len(hub.state.requests)

        res = train(tmp_path / "run")
        requests = hub.state.requests[uploaded:]
        ranges = list(hub.state.ranges)

    assert res.returncode == 0, res.stderr[-3000:]
    assert f"streaming {REPO}: 4 shards" in res.stderr, res.stderr[-3000:]
    assert json.loads((tmp_path / "run/config.json").read_text())["label_names"] == CLASSES
    assert json.loads((tmp_path / "run/summary.json").read_text())["eval"]["num_samples"] == 32

    # every parquet shard was read over HTTP in byte ranges (no plain GET of a whole file), no byte of it twice
    gets = {r.removeprefix("GET ") for r in requests if r.startswith("GET ") and r.endswith(".parquet")}
    assert {g.rsplit("/", 1)[1] for g in gets} == set(parquet), requests
    assert gets == {path for path, _ in ranges}, (requests, ranges)
    served = Counter()
    for path, header in ranges:
        size = (shards / path.rsplit("/", 1)[1]).stat().st_size
        start, stop = Handler._byte_range(header, size) or (0, 0)
        served[path.rsplit("/", 1)[1]] += stop - start
    assert all(0 < served[name] <= (shards / name).stat().st_size for name in parquet), (served, ranges)
    # ... and nothing was prepared into the datasets cache, nor any shard kept in the hub cache
    assert not list((tmp_path / "hf-datasets").rglob("*.arrow"))
    assert not [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and p.suffix == ".parquet"]
    cached = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert sum(p.stat().st_size for p in cached) < 4096, cached  # the dataset card only


def test_streaming_from_an_unreachable_hub_fails_in_one_line(hub_env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    hub_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    res = train(tmp_path / "run")
    assert res.returncode == 1, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr[-3000:]
    assert "cannot be reached" in lines[0] and "drop --streaming" in lines[0] and REPO in lines[0]
    assert not (tmp_path / "run").exists()
