"""push/pull through the real huggingface_hub client against tests/hub_server.py, and a directory hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CLASSES, make_images, make_tiny_model
from hub_server import HubServer

TOKEN = "hf_test_token_do_not_print"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh local Hub; the client points at it (constants read at import time are patched too)."""
    from huggingface_hub import constants

    with HubServer(token=TOKEN) as server:
        env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("DEITCTL_HUB_DIR", raising=False)
        monkeypatch.delenv("DEITCTL_CACHE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield server


@pytest.fixture
def run_dir(tmp_path, tiny_distilled_dir) -> Path:
    """A finished run: model files + recipe, per-epoch metrics, a later eval.json and curves.png."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_distilled_dir, run)
    recipe = {"model": "deit_tiny_distilled_patch16_224", "dataset": "fashion-mnist", "epochs": 2, "batch_size": 32,
              "lr": 0.0005, "distillation_type": "hard", "teacher": "regnety_160", "eval_split": "test"}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    rows = [{"epoch": e, "step": 2 * e, "train_loss": 1.5 - e / 4, "lr": 5e-4, "img_per_s": 100.0, "epoch_time_s": 1.0,
             "eval": {"top1": 40.0 + 10 * e, "top5": 100.0, "loss": 1.2, "num_samples": 32,
                      "top1_cls": 39.0 + 10 * e, "top1_dist": 41.0 + 10 * e}} for e in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval.json").write_text(json.dumps({"top1": 62.5, "top5": 100.0, "loss": 1.1, "num_samples": 32,
                                               "dataset": "fashion-mnist", "split": "test"}))
    (run / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a plot")
    return run


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def outputs(model, seed: int = 0):
    import torch

    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


# ----------------------------------------------------------------------------------- HTTP hub
def test_push_repush_pull_and_load_with_plain_timm(cli, hub, run_dir, tmp_path):
    import timm

    code, out, err = cli("push", run_dir, "org/tiny-deit", "--json")
    assert code == 0, err
    pushed = json.loads(out)
    assert len(pushed["commit"]) == 40 and pushed["changed"] is True
    assert hub.state.commits_made == [("org/tiny-deit", pushed["commit"],
                                       ["README.md", "config.json", "curves.png", "model.safetensors"])]
    files = hub.state.repos["org/tiny-deit"].commits[pushed["commit"]]
    assert files["model.safetensors"] == (run_dir / "model.safetensors").read_bytes()
    meta = front_matter(files["README.md"].decode())
    assert meta["library_name"] == "timm" and "distillation" in meta["tags"]
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test"
    assert {m["name"]: m["value"] for m in result["metrics"]} == {"Top-1 accuracy": 62.5, "Top-5 accuracy": 100.0}
    assert "![training curves](curves.png)" in files["README.md"].decode()
    assert TOKEN not in out + err

    code, out, err = cli("push", run_dir, "org/tiny-deit", "--json")  # unchanged: no second commit
    assert code == 0, err
    assert json.loads(out)["commit"] == pushed["commit"] and json.loads(out)["changed"] is False
    assert len(hub.state.commits_made) == 1

    code, out, err = cli("pull", "org/tiny-deit", "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["commit"] == pushed["commit"]
    assert pulled["sha256"] == sha256(run_dir / "model.safetensors") == pushed["sha256"]
    assert sorted(p.name for p in Path(pulled["path"]).iterdir()) == ["README.md", "config.json", "model.safetensors"]
    rebuilt = timm.create_model(f"local-dir:{pulled['path']}", pretrained=True)
    assert (outputs(rebuilt) - outputs(make_tiny_model(True))).abs().max().item() == 0.0


def test_pull_pinned_revision_and_branch(cli, hub, tiny_model_dir, tmp_path):
    from deitctl.models.store import save_model_dir

    v1 = json.loads(cli("push", tiny_model_dir, "org/m", "--json")[1])["commit"]
    v2_dir = tmp_path / "v2"
    save_model_dir(make_tiny_model(False, seed=1), v2_dir, label_names=CLASSES, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    v2 = json.loads(cli("push", v2_dir, "org/m", "--json", "--message", "second")[1])["commit"]
    assert v1 != v2 and len(hub.state.commits_made) == 2

    code, out, err = cli("pull", f"org/m@{v1}", "--out", tmp_path / "old", "--json")
    assert code == 0, err
    assert json.loads(out)["commit"] == v1 and sha256(tmp_path / "old/model.safetensors") == sha256(tiny_model_dir / "model.safetensors")
    code, out, _ = cli("pull", "org/m", "--json")
    assert json.loads(out)["commit"] == v2 and json.loads(out)["sha256"] == sha256(v2_dir / "model.safetensors")

    code, out, err = cli("push", tiny_model_dir, "org/m", "--revision", "v1-branch", "--json")
    assert code == 0, err
    assert hub.state.repos["org/m"].branches["v1-branch"] == json.loads(out)["commit"] != v2
    code, out, _ = cli("pull", "org/m@v1-branch", "--json")
    assert json.loads(out)["sha256"] == sha256(tiny_model_dir / "model.safetensors")


def test_load_model_accepts_a_repo_id(hub, tiny_distilled_dir):
    from deitctl.app.hub import PushRequest, push
    from deitctl.models.refs import load_model

    push(PushRequest(tiny_distilled_dir, "org/routed"))
    loaded = load_model("org/routed")
    assert loaded.label_names == CLASSES and loaded.source == "org/routed"
    assert load_model("hf-hub:org/routed").source == "org/routed"  # timm's explicit prefix: always the Hub
    assert (outputs(loaded.model) - outputs(make_tiny_model(True))).abs().max().item() == 0.0


def test_missing_repo_revision_and_file(cli, hub, tiny_model_dir, tmp_path):
    from huggingface_hub import HfApi

    code, _, err = cli("pull", "org/nope")
    assert code == 2 and "org/nope: no such model repo" in err and "\n" not in err.strip()
    cli("push", tiny_model_dir, "org/m")
    code, _, err = cli("pull", "org/m@no-such-branch")
    assert code == 2 and "no revision 'no-such-branch'" in err

    api = HfApi(endpoint=hub.url)
    api.create_repo("org/config-only")
    api.upload_file(path_or_fileobj=tiny_model_dir / "config.json", path_in_repo="config.json", repo_id="org/config-only")
    code, _, err = cli("pull", "org/config-only", "--out", tmp_path / "x")
    assert code == 2 and "no model.safetensors" in err
    assert not (tmp_path / "x").exists()


def test_push_of_something_that_is_not_a_model_sends_nothing(cli, hub, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/config.json").write_text("{}")
    code, _, err = cli("push", tmp_path / "notes", "org/x")
    assert code == 2 and "not a model or run directory" in err and "nothing was pushed" in err
    assert hub.state.commits_made == [] and hub.state.repos == {}
    code, _, err = cli("push", tmp_path / "notes", "not-a-repo-id")
    assert code == 2 and "not a repo id" in err


def test_config_that_does_not_match_weights_is_refused(cli, hub, tiny_model_dir, tmp_path):
    from huggingface_hub import HfApi

    from deitctl.models.store import save_model_dir

    wider = tmp_path / "wider"
    model = make_tiny_model(False)
    save_model_dir(model, wider)
    import timm

    other = timm.create_model("deit_tiny_patch16_224", img_size=16, in_chans=1, num_classes=4, depth=2,
                              embed_dim=48, num_heads=2, patch_size=4)
    from safetensors.torch import save_file

    save_file(other.state_dict(), str(wider / "model.safetensors"))
    api = HfApi(endpoint=hub.url)
    api.create_repo("org/bad")
    api.upload_folder(folder_path=wider, repo_id="org/bad")
    code, _, err = cli("pull", "org/bad")
    assert code == 1 and "org/bad@" in err and "config does not match weights (shape of 'blocks.0" in err
    assert not list((tmp_path / "hf" / "deitctl").rglob("model.safetensors"))  # nothing kept in the cache
    code, _, err = cli("push", wider, "org/bad2")  # and push refuses to publish it
    assert code == 1 and "config does not match weights" in err and "org/bad2" not in hub.state.repos


def test_corrupt_download_is_refused_and_not_kept(cli, hub, tiny_model_dir, tmp_path):
    cli("push", tiny_model_dir, "org/m")
    hub.state.corrupt("org/m", "model.safetensors", b"\0" * 64)
    code, _, err = cli("pull", "org/m", "--out", tmp_path / "m")
    assert code == 1 and "model.safetensors is corrupt (sha256" in err
    assert not (tmp_path / "m").exists() and not list((tmp_path / "hf" / "deitctl").rglob("model.safetensors"))


def test_auth_failure_and_unreachable_hub(cli, hub, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value")
    code, out, err = cli("push", tiny_model_dir, "org/m")
    assert code == 1 and "refused the request (HTTP 401)" in err and "HF_TOKEN" in err
    assert "hf_wrong_token_value" not in out + err and hub.state.commits_made == []

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    for args in (("push", tiny_model_dir, "org/m"), ("pull", "org/m")):
        code, _, err = cli(*args)
        assert code == 1 and f"cannot reach the hub at http://127.0.0.1:{closed_port}" in err
        assert "\n" not in err.strip()
    assert "was never pulled" in err and "HF_HUB_OFFLINE" not in err  # it is not set: nothing to unset


def test_offline_or_unreachable_pull_serves_the_cached_revision(cli, hub, tiny_model_dir, monkeypatch):
    from huggingface_hub import constants

    cli("push", tiny_model_dir, "org/m")
    first = json.loads(cli("pull", "org/m", "--json")[1])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = cli("pull", "org/m", "--json")
    assert code == 0, err
    assert json.loads(out)["from_cache"] is True and json.loads(out)["path"] == first["path"]
    code, _, err = cli("pull", "org/never-pulled")
    assert code == 1 and "HF_HUB_OFFLINE is set" in err and "or unset HF_HUB_OFFLINE" in err


def test_offline_predict_says_once_that_it_uses_the_revision_pulled_before(cli, hub, tiny_model_dir, tmp_path):
    """One command checks the reference early, then loads it: the fallback to the cache is one line, not three."""
    cli("push", tiny_model_dir, "org/m")
    assert cli("pull", "org/m")[0] == 0
    make_images(1)[0][0].save(tmp_path / "img.png")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    res = subprocess.run([sys.executable, "-m", "deitctl.cli", "predict", "org/m", "img.png", "--json",
                          "--num-workers", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("hub offline; using org/m@") == 1, res.stderr
    assert json.loads(res.stdout)["path"] == "img.png"  # JSON Lines: the one image's object on its line


# ---------------------------------------------------------------------------------- directory hub
def test_eval_of_a_pushed_model_takes_the_dataset_its_card_names(cli, tmp_path, monkeypatch, tiny_model_dir,
                                                                 tiny_data):
    from deitctl.data import fashion_mnist
    from deitctl.models.store import save_model_dir

    (tmp_path / "hub").mkdir()
    for key, value in {"DEITCTL_CACHE": tmp_path / "cache", "DEITCTL_HUB_DIR": tmp_path / "hub"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.chdir(tmp_path)

    def pushed(repo_id: str, model_dir: Path, dataset: str) -> str:
        run = tmp_path / repo_id.replace("/", "--")
        shutil.copytree(model_dir, run)
        (run / "recipe.yaml").write_text(yaml.safe_dump({"model": "deit_tiny_patch16_224", "dataset": dataset,
                                                         "eval_split": "test"}))
        assert cli("push", run, repo_id)[0] == 0
        return repo_id

    code, _, err = cli("eval", pushed("team/local", tiny_model_dir, str(tiny_data)))  # a local dataset: not on the card
    assert code == 2 and "records no dataset" in err and "--dataset D" in err
    code, _, err = cli("eval", pushed("team/on-hub", tiny_model_dir, "someorg/quadrants") + "@main")
    assert code == 1 and "dataset 'someorg/quadrants'" in err and "not in the local datasets cache" in err  # offline
    if not fashion_mnist.idx_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    fashion = tmp_path / "fashion"
    save_model_dir(make_tiny_model(img_size=28, num_classes=10), fashion, label_names=fashion_mnist.CLASS_NAMES,
                   mean=(0.2860,), std=(0.3530,))
    code, out, err = cli("eval", pushed("team/fashion", fashion, "fashion-mnist") + "@main", "--max-samples", "40",
                         "--num-workers", "0", "--json")
    assert code == 0, err
    assert "evaluating on fashion-mnist (test), the dataset its model card names" in err
    assert (json.loads(out)["dataset"], json.loads(out)["split"], json.loads(out)["num_samples"]) == (
        "fashion-mnist", "test", 40)

def test_directory_hub_push_pull_pinned_and_missing(cli, tmp_path, tiny_model_dir, monkeypatch):
    from deitctl.models.store import save_model_dir

    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DEITCTL_HUB_DIR", raising=False)
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    v1 = json.loads(cli("push", tiny_model_dir, "team/m", "--hub-dir", hub_dir, "--json")[1])
    again = json.loads(cli("push", tiny_model_dir, "team/m", "--hub-dir", hub_dir, "--json")[1])
    assert again["commit"] == v1["commit"] and again["changed"] is False
    v2_dir = tmp_path / "v2"
    save_model_dir(make_tiny_model(False, seed=3), v2_dir, label_names=CLASSES)
    v2 = json.loads(cli("push", v2_dir, "team/m", "--hub-dir", hub_dir, "--json")[1])
    assert (hub_dir / "team/m/refs/main").read_text().strip() == v2["commit"] != v1["commit"]
    manifest = json.loads((hub_dir / f"team/m/commits/{v2['commit']}/manifest.json").read_text())
    assert manifest["parent"] == v1["commit"] and manifest["files"]["model.safetensors"]["sha256"] == v2["sha256"]

    monkeypatch.setenv("DEITCTL_HUB_DIR", str(hub_dir))  # the environment works as well as --hub-dir
    code, out, err = cli("pull", f"team/m@{v1['commit'][:10]}", "--out", tmp_path / "old", "--json")
    assert code == 0, err
    assert sha256(tmp_path / "old/model.safetensors") == v1["sha256"] == sha256(tiny_model_dir / "model.safetensors")
    monkeypatch.delenv("DEITCTL_HUB_DIR")
    monkeypatch.setenv("HF_ENDPOINT", hub_dir.as_uri())  # ... and so does a file:// endpoint
    code, out, _ = cli("pull", "team/m", "--json")
    assert code == 0 and json.loads(out)["sha256"] == v2["sha256"]

    code, _, err = cli("pull", "team/none")
    assert code == 2 and "no such model repo" in err
    (hub_dir / f"team/m/commits/{v2['commit']}/model.safetensors").write_bytes(b"tampered")
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "fresh-cache"))  # the verified copy is cached: start anew
    code, _, err = cli("pull", "team/m", "--overwrite", "--out", tmp_path / "old")
    assert code == 1 and "is corrupt" in err and sha256(tmp_path / "old/model.safetensors") == v1["sha256"]
