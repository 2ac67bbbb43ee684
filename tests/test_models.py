"""Model factory and `deitctl info`: Table 10 figures, overrides, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deitctl.config.loader import load_recipe
from deitctl.models.factory import create_model


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


def test_pos_embed_resize_keeps_prefix_tokens_and_matches_bicubic():
    import torch
    import torch.nn.functional as F

    from deitctl.models.adapt import load_adapted
    from tests.conftest import make_tiny_model

    src = make_tiny_model(distilled=True, img_size=16)  # 4×4 grid + cls + dist
    dst = make_tiny_model(distilled=True, img_size=32, seed=1)  # 8×8 grid
    state = src.state_dict()
    load_adapted(dst, state)
    pe = state["pos_embed"]
    assert torch.equal(dst.pos_embed[:, :2], pe[:, :2])  # class and distillation tokens kept as they are
    grid = pe[:, 2:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, 64, -1)
    assert torch.allclose(dst.pos_embed[:, 2:], ref, atol=1e-6)
    assert torch.equal(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_heads_reset_when_classes_change(tiny_distilled_dir):
    import torch

    from deitctl.models.refs import load_model

    same = load_model(str(tiny_distilled_dir)).model
    other = load_model(str(tiny_distilled_dir), num_classes=7).model
    assert other.head.weight.shape[0] == 7 and other.head_dist.weight.shape[0] == 7
    assert torch.equal(other.blocks[1].mlp.fc1.weight, same.blocks[1].mlp.fc1.weight)
    assert torch.equal(other.cls_token, same.cls_token)


def test_worker_errors_become_one_line():
    from deitctl.cli import _one_line
    from deitctl.core.errors import DeitctlError

    wrapped = DeitctlError("Caught UnreadableImageError in DataLoader worker process 0.\nOriginal Traceback (most "
                           "recent call last):\n  File \"x.py\", line 1\ndeitctl.samples.UnreadableImageError: unreadable "
                           "image /d/cat.png (OSError: truncated); remove or replace the file and run again")
    assert _one_line(wrapped) == ("unreadable image /d/cat.png (OSError: truncated); remove or replace the file "
                                  "and run again")
    assert _one_line(DeitctlError("a\nb")) == "a b"


def test_tagged_timm_weights_resized_to_384_as_the_authors_do(monkeypatch):
    """`finetune deit-b-384 --from deit_base_patch16_224.fb_in1k`: the published weights at 224, then the
    grid of position embeddings resized bicubic without antialiasing (timm's own load-time resize antialiases)."""
    import timm.models._builder as builder
    import torch
    from timm.layers import resample_abs_pos_embed

    from deitctl.models.refs import load_model

    def fake_published(model, *args, **kwargs):  # what the Hub would give, without the Hub
        with torch.no_grad():
            model.pos_embed.copy_(torch.randn(model.pos_embed.shape, generator=torch.Generator().manual_seed(0)))

    monkeypatch.setattr(builder, "load_pretrained", fake_published)
    monkeypatch.setattr("deitctl.models.refs.preflight", lambda ref: None)  # the Hub is simulated here
    loaded = load_model("deit_tiny_patch16_224.fb_in1k", img_size=384)
    assert tuple(loaded.model.patch_embed.img_size) == (384, 384) and loaded.data_config.size == 384
    published = torch.randn((1, 197, 192), generator=torch.Generator().manual_seed(0))
    ours = resample_abs_pos_embed(published, new_size=[24, 24], num_prefix_tokens=1, interpolation="bicubic",
                                  antialias=False)
    assert torch.equal(loaded.model.pos_embed, ours)
    assert torch.equal(loaded.model.pos_embed[:, :1], published[:, :1])  # the class token's embedding is kept
    timms = resample_abs_pos_embed(published, new_size=[24, 24], num_prefix_tokens=1, antialias=True)
    assert not torch.allclose(loaded.model.pos_embed, timms)


@pytest.mark.parametrize(("optimizer", "nesterov"), [("sgd", True), ("momentum", False)])
def test_transfer_sgd_is_nesterov_as_the_authors_ran_it(optimizer, nesterov):
    from conftest import make_tiny_model

    from deitctl.training.optim import make_optimizer

    recipe = load_recipe("cifar10", [f"optimizer={optimizer}"])
    opt = make_optimizer(make_tiny_model(), recipe, 0.01)
    assert type(opt).__name__ == "SGD" and opt.defaults["nesterov"] is nesterov and opt.defaults["momentum"] == 0.9
    assert load_recipe("cifar10").optimizer == "sgd"
