"""What needs no model is said before anything heavy loads: the real console script, run with ``-X importtime``,
answers with its one-line error without ever importing torch or timm (no time is asserted: the imports are)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"torch", "timm"}


def deitctl(*args: object, cwd: Path, **env: str) -> tuple[int, list[str], set[str]]:
    """Exit code, what stderr says (one entry per line), and every module the process imported."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "deitctl.cli", *map(str, args)], cwd=cwd,
                         env=environ, capture_output=True, text=True, timeout=120)
    said = [line for line in res.stderr.splitlines() if line.strip() and not line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    return res.returncode, said, imported


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A working directory with an image, an empty caches and a ``timm/`` folder (in the way of the timm org)."""
    make_images(1)[0][0].save(tmp_path / "img.png")
    (tmp_path / "timm").mkdir()
    return tmp_path


def caches(root: Path) -> dict[str, str]:
    return {"HF_HOME": str(root / "hf"), "HF_DATASETS_CACHE": str(root / "hf-datasets"),
            "DEITCTL_CACHE": str(root / "cache")}


@pytest.mark.parametrize("offline", ["1", "0"])
@pytest.mark.parametrize("command", [["predict", "{ref}", "img.png"], ["eval", "{ref}", "--dataset", "fashion-mnist"]])
def test_a_local_folder_in_the_way_of_a_hub_id_is_said_before_torch_loads(workdir, command, offline):
    ref = "timm/deit_tiny_patch16_224.fb_in1k"
    code, said, imported = deitctl(*(a.format(ref=ref) for a in command), cwd=workdir, HF_HUB_OFFLINE=offline,
                                   HF_ENDPOINT="http://127.0.0.1:9", **caches(workdir))  # online: nothing answers
    assert code == 2 and len(said) == 1 and said[0].startswith("error: "), said
    assert "'timm' is a local folder" in said[0] and f"hf-hub:{ref}" in said[0]
    assert not HEAVY & imported


def test_eval_offline_refuses_an_uncached_hub_dataset_before_the_model_loads(workdir, tiny_model_dir):
    code, said, imported = deitctl("eval", tiny_model_dir, "--dataset", "someorg/quadrants", cwd=workdir,
                                   HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **caches(workdir))
    assert code == 1 and len(said) == 1 and "'someorg/quadrants'" in said[0], said
    assert "not in the local datasets cache" in said[0]
    assert not HEAVY & imported


@pytest.mark.parametrize(("args", "needle"), [
    (["missing.png"], "missing.png: no such image or directory"),
    (["img.png", "--attention", "timm"], "timm already exists"),
    (["img.png", "--top-k", "0"], "--top-k must be at least 1"),
])
def test_predict_refuses_bad_inputs_before_the_model_loads(workdir, tiny_model_dir, args, needle):
    code, said, imported = deitctl("predict", tiny_model_dir, *args, cwd=workdir, **caches(workdir))
    assert code == 2 and len(said) == 1 and needle in said[0], said
    assert not HEAVY & imported
