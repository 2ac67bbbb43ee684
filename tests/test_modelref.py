"""The one model loader: model dirs, legacy .pth files (safely), timm names, and its error messages."""

from __future__ import annotations

import argparse
import json
import pathlib

import pytest
from conftest import make_tiny_model

from deitctl.core.errors import DeitctlError, UsageError


def deit64(distilled: bool = False, seed: int = 0):
    """A tiny DeiT with 64 dimensions per head, like every DeiT, so its .pth can be inferred exactly."""
    import timm
    import torch

    torch.manual_seed(seed)
    arch = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return timm.create_model(arch, img_size=16, in_chans=1, num_classes=4, depth=2, embed_dim=64, num_heads=1,
                             patch_size=4, mlp_ratio=2.0).eval()


def same_outputs(a, b) -> bool:
    import torch

    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


class Trojan:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ------------------------------------------------------------------------------------------ .pth


def test_pth_with_a_pickled_object_is_refused(cli, tiny_data, tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "evil.pth"
    torch.save({"model": deit64().state_dict(), "extra": Trojan(marker)}, ckpt)
    code, _, err = cli("eval", ckpt, "--dataset", tiny_data)
    assert code == 2, err
    assert "refused" in err and "pickled" in err and "state_dict" in err
    assert "\x1b" not in err, "no terminal escapes from torch's message"
    assert not marker.exists()


@pytest.mark.parametrize("distilled", [False, True])
def test_authors_checkpoint_loads_with_identical_outputs(tmp_path, distilled):
    import torch

    from deitctl.models.refs import load_model

    model = deit64(distilled)
    ckpt = tmp_path / "checkpoint.pth"
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
                "args": argparse.Namespace(model="deit_tiny_patch16_224", lr=5e-4)}, ckpt)
    loaded = load_model(str(ckpt))
    assert loaded.num_classes == 4 and loaded.data_config["input_size"] == (1, 16, 16)
    assert same_outputs(loaded.model, model)
    assert ("distilled" in loaded.arch) == distilled


def test_ddp_prefixed_raw_state_dict(tmp_path):
    import torch

    from deitctl.models.refs import load_model

    model = deit64(seed=3)
    ckpt = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, ckpt)
    assert same_outputs(load_model(str(ckpt)).model, model)


def test_pth_evaluates_through_the_cli(cli, tiny_data, tmp_path):
    import torch

    ckpt = tmp_path / "w.pth"
    torch.save({"model": deit64().state_dict()}, ckpt)
    code, out, err = cli("eval", ckpt, "--dataset", tiny_data, "--split", "test", "--num-workers", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 32


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"not a zip, not a pickle", "not a readable PyTorch file"), ([1, 2, 3], "no state dict inside")],
)
def test_unusable_pth_files(tmp_path, content, needle):
    import torch

    from deitctl.models.refs import load_model

    ckpt = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    else:
        torch.save(content, ckpt)
    with pytest.raises(UsageError, match=needle):
        load_model(str(ckpt))


# ------------------------------------------------------------------------------- model directories


def test_model_dir_round_trip(tiny_model_dir, tiny_distilled_dir):
    from deitctl.models.refs import load_model

    for path, distilled in ((tiny_model_dir, False), (tiny_distilled_dir, True)):
        loaded = load_model(str(path))
        assert same_outputs(loaded.model, make_tiny_model(distilled))
        assert loaded.data_config["input_size"] == (1, 16, 16), "follows the model as built, not 3×224×224"
        assert loaded.data_config["mean"] == (0.5,) and loaded.label_names == ["zero", "one", "two", "three"]


def test_config_that_does_not_match_the_weights(tiny_model_dir, tmp_path):
    import shutil

    from deitctl.models.refs import load_model

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model_args"]["depth"] = 3
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DeitctlError, match="does not match weights"):
        load_model(str(broken))


def test_missing_local_path_is_not_taken_for_a_hub_repo(tmp_path, monkeypatch):
    from deitctl.models.refs import load_model

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no such run or model directory"):
        load_model("runs/typo")


def test_timm_names(tmp_path):
    from deitctl.models.refs import load_model

    loaded = load_model("deit_tiny_patch16_224", num_classes=3, img_size=32)
    assert loaded.num_classes == 3 and loaded.data_config["input_size"] == (3, 32, 32)
    with pytest.raises(UsageError, match="did you mean"):
        load_model("deit_tiny_patch16_22")


def test_timm_prefixes_say_exactly_which_kind_of_reference(tiny_model_dir, tmp_path, monkeypatch):
    """`local-dir:` is always a directory (as in timm), even where the bare name would read as a Hub repo."""
    import shutil

    from deitctl.models.refs import load_model

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "org" / "model")
    loaded = load_model("local-dir:org/model")
    assert loaded.label_names == ["zero", "one", "two", "three"] and loaded.path == pathlib.Path("org/model")
    with pytest.raises(UsageError, match="org/missing: not a model or run directory"):
        load_model("local-dir:org/missing")
