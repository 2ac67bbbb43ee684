"""Using a trained model: `deitctl predict` (heads, attention maps), `deitctl data check`, offline answers at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, make_images, make_tiny_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder of quadrant images in several sizes and modes, a sub-folder, and one file that is no image."""
    root = tmp_path / "imgs"
    (root / "more").mkdir(parents=True)
    pics, labels = make_images(6, size=16)
    for i, (img, label) in enumerate(zip(pics, labels, strict=True)):
        img = img.convert("RGB").resize((24, 20)) if i % 2 else img  # other sizes and modes: preprocessed as eval
        img.save(root / ("more" if i >= 4 else "") / f"q{i}-{CLASSES[label]}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_predict_json_gives_top_k_and_each_head_of_a_distilled_model(cli, tiny_distilled_dir, images):
    code, out, err = cli("predict", tiny_distilled_dir, images, "--top-k", "3", "--json", "--num-workers", "0")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]  # JSON Lines: one object per image and line
    assert all(isinstance(row, dict) for row in rows) and out.endswith("}\n")
    assert len(rows) == 6 and {Path(r["path"]).name for r in rows} == {f"q{i}-{CLASSES[i % 4]}.png" for i in range(6)}
    for row in rows:
        assert [set(t) for t in row["top_k"]] == [{"label", "index", "prob"}] * 3
        assert row["top_k"][0]["prob"] >= row["top_k"][1]["prob"] >= row["top_k"][2]["prob"]
        assert all(t["label"] == CLASSES[t["index"]] for t in row["top_k"])
        assert set(row["heads"]) == {"class", "distillation", "fused"} and row["heads"]["fused"] == row["top_k"]
    assert "skipped" in err and "notes.txt" in err and "6 images classified, 1 skipped" in err


def test_predict_matches_eval_preprocessing(cli, tiny_model_dir, tiny_data, tmp_path):
    """The images of a split, written to files and predicted, get the decisions `eval --save` keeps for them."""
    import shutil

    from datasets import load_from_disk

    test = load_from_disk(str(tiny_data))["test"]
    folder = tmp_path / "test-images"
    folder.mkdir()
    for i, img in enumerate(test["image"]):
        img.save(folder / f"{i:03d}.png")
    run = tmp_path / "model"
    shutil.copytree(tiny_model_dir, run)
    assert cli("eval", run, "--dataset", tiny_data, "--save", "--num-workers", "0", "--precision", "fp32")[0] == 0
    code, out, err = cli("predict", run, folder, "--json", "--num-workers", "0", "--precision", "fp32")
    assert code == 0, err
    with np.load(run / "predictions.npz") as saved:
        assert [json.loads(line)["top_k"][0]["index"] for line in out.splitlines()] == saved["pred"].tolist()


def test_attention_maps_are_pngs_written_as_one_directory(cli, tiny_distilled_dir, images, tmp_path):
    out = tmp_path / "attention"
    code, _, err = cli("predict", tiny_distilled_dir, images, "--attention", out, "--num-workers", "0")
    assert code == 0, err
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6 and all(p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 3000 for p in pngs)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".attention")]
    code, _, err = cli("predict", tiny_distilled_dir, images, "--attention", out)
    assert code == 2 and "already exists" in err and "--overwrite" in err


def test_attention_rollout_of_a_known_attention_pattern():
    """Two blocks in which every token attends only to patch 2: both views put all the weight there."""
    import torch

    from deitctl.evaluation.attention import token_maps

    n = 2 + 4  # class + distillation tokens, a 2×2 grid
    attn = torch.zeros(1, 2, n, n)
    attn[..., 2 + 2] = 1.0
    maps = token_maps([attn, attn], prefix=2, grid=(2, 2))
    assert set(maps) == {"class last", "class rollout", "distillation last", "distillation rollout"}
    for m in maps.values():
        assert m.shape == (1, 2, 2) and m[0, 1, 0] == 1.0 and m.flatten().tolist().count(0.0) == 3


def test_predict_bad_input_is_one_line(cli, tiny_model_dir, images, tmp_path):
    code, _, err = cli("predict", tiny_model_dir, tmp_path / "missing.png")
    assert code == 2 and "missing.png: no such image or directory" in err
    code, _, err = cli("predict", "resnet10t", images, "--attention", tmp_path / "a")
    assert code == 2 and "needs a vision transformer" in err
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "a.txt").write_text("x")
    code, _, err = cli("predict", tiny_model_dir, only_text, "--num-workers", "0")
    assert code == 2 and "none of the 1 files is a readable image" in err
    assert not (tmp_path / "a").exists()


def test_a_model_without_class_names_predicts_class_indices_and_says_why(cli, images, tmp_path):
    from deitctl.models.store import save_model_dir

    unnamed = tmp_path / "unnamed"
    save_model_dir(make_tiny_model(), unnamed)  # no label_names in its config (a plain timm export, say)
    code, out, err = cli("predict", unnamed, images, "--json", "--top-k", "2", "--num-workers", "0")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6 and all(t["label"] is None and 0 <= t["index"] < 4 for r in rows for t in r["top_k"])
    assert "has no class names in its config" in err and "class indices" in err
    code, out, err = cli("predict", unnamed, images, "--num-workers", "0")
    assert code == 0 and "6 images classified" in err and "None" not in out


# ------------------------------------------------------------------------------------ data check
def test_data_check_lists_unreadable_and_mislabelled_entries(cli, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
    from test_data import image_tree

    code, out, err = cli("data", "check", image_tree(tmp_path / "pets", corrupt="broken.png"), "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["checked"] == 13 and [Path(p["path"]).name for p in report["problems"]] == ["broken.png"]
    assert report["problems"][0]["split"] == "train" and "unreadable image" in report["problems"][0]["problem"]

    pics, _ = make_images(4)
    ds = Dataset.from_dict({"image": pics, "label": [0, 1, 7, 2]},
                           features=Features({"image": Image(), "label": Value("int64")}))
    DatasetDict({"train": ds.cast_column("label", ClassLabel(num_classes=8))}).save_to_disk(str(tmp_path / "lab"))
    assert cli("data", "check", tmp_path / "lab")[0] == 0  # 8 classes declared: 7 is one of them
    clean = tmp_path / "clean"
    DatasetDict({"train": ds, "test": ds}).save_to_disk(str(clean))
    code, out, err = cli("data", "check", clean, "--split", "train", "--json")
    assert code == 0 and json.loads(out)["problems"] == [] and json.loads(out)["splits"] == {"train": 4}


# --------------------------------------------------------------------------------------- offline
class SilentServer:
    """Accepts connections and never answers: a hub behind a broken network. Counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.connections, self.held = 0, []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"


@pytest.mark.parametrize("case", ["silent-hub", "HF_HUB_OFFLINE"])
def test_offline_commands_answer_at_once_with_one_line(tmp_path, case):
    """No retries (one probe at most), no library warnings: the one-line error straight away."""
    server = SilentServer()
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), DEITCTL_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    env.pop("HF_DATASETS_OFFLINE", None)
    if case == "silent-hub":
        env |= {"HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0"}
    else:
        env["HF_HUB_OFFLINE"] = "1"
    commands = [["finetune", "--dataset", "cifar100"], ["pull", "org/model"],
                ["eval", "deit_tiny_patch16_224.fb_in1k", "--dataset", "fashion-mnist"],
                ["train", "fashion-deit-ti-distilled", "--teacher", "org/teacher", "--out", str(tmp_path / "r")]]
    for args in commands:
        res = subprocess.run([sys.executable, "-m", "deitctl.cli", *args], env=env, capture_output=True, text=True,
                             timeout=120)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
        assert "etry" not in res.stderr and "Warning" not in res.stderr, args  # no "Retrying in 1s" chatter
    assert server.connections <= len(commands)  # at most one probe per command: no retry loop


def test_report_shows_where_each_transformer_looks(cli, tiny_data, tmp_path):
    from test_train import QUAD

    vit = tmp_path / "vit"
    code, _, err = cli("train", "fashion-deit-ti-distilled", "--dataset", tiny_data, "--out", vit, *QUAD,
                       "--epochs", "1", "--batch-size", "16", "--set", "distillation_type=none")
    assert code == 0, err
    out = tmp_path / "rep" / "report.md"
    code, _, err = cli("report", vit, "--out", out, "--attention-images", "3")
    assert code == 0, err
    png = out.with_name("report_attention.png")
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5000
    assert "![attention rollout](report_attention.png)" in out.read_text()
