"""Model factory and `deitctl info`: Table 10 figures, overrides, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deitctl.models import create_model
from deitctl.recipes import load_recipe


@pytest.mark.parametrize(
    ("ref", "params_m", "gmacs"),
    [("deit-b", 86.6, 17.6), ("deit-s", 22.1, 4.6), ("deit-ti", 5.7, 1.25), ("deit-b-distilled", 87.3, 17.7)],
)
def test_info_matches_table10(cli, ref, params_m, gmacs):
    code, out, _ = cli("info", ref, "--json")
    assert code == 0
    row = json.loads(out)
    assert row["params"] / 1e6 == pytest.approx(params_m, abs=0.15)
    assert row["gmacs"] == pytest.approx(gmacs, rel=0.03)
    assert row["img_size"] == 224


def test_info_384(cli):
    code, out, _ = cli("info", "deit-b-384", "--json")
    assert code == 0 and json.loads(out)["gmacs"] == pytest.approx(55.4, rel=0.02)


def test_factory_overrides():
    r = load_recipe("fashion-deit-ti-distilled", ["model_args.depth=2", "model_args.embed_dim=32",
                                                  "model_args.num_heads=2", "num_classes=7"])
    m = create_model(r)
    assert len(m.blocks) == 2 and m.embed_dim == 32 and m.num_classes == 7
    assert m.patch_embed.proj.in_channels == 1 and tuple(m.patch_embed.img_size) == (28, 28)
    assert hasattr(m, "head_dist")


def test_info_errors(cli):
    code, _, err = cli("info", "deit-tii")
    assert code == 2 and "did you mean: deit-ti" in err


def test_help_does_not_import_torch():
    code = "import sys; from deitctl.cli import app; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    res = subprocess.run([sys.executable, "-m", "deitctl.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout and "finetune" in res.stdout
