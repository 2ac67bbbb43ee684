"""`deitctl bench`: row shape and consistency (never absolute times), model resolution, errors."""

from __future__ import annotations

import json

import pytest

ROW_KEYS = {"batch_size", "precision", "img_per_s", "peak_mem_mb", "params", "gmacs", "device", "compile"}


def bench_json(cli, *args) -> list[dict]:
    code, out, err = cli("bench", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_rows_for_each_batch_size_and_precision(cli, tiny_model_dir):
    from conftest import make_tiny_model

    from deitctl.models.inspect import count_gmacs, count_params

    rows = bench_json(cli, tiny_model_dir, "--batch-sizes", "1,4", "--precision", "fp32,bf16", "--repeats", "2")
    assert [(r["batch_size"], r["precision"]) for r in rows] == [(1, "fp32"), (4, "fp32"), (1, "bf16"), (4, "bf16")]
    from deitctl.runtime.hardware import cpu

    model = make_tiny_model()
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert r["img_per_s"] > 0 and r["peak_mem_mb"] >= 0
        # throughput and latency are two views of the same median
        assert r["img_per_s"] * r["ms_per_batch"] / 1000 == pytest.approx(r["batch_size"], rel=0.01)
        assert r["params"] == count_params(model)
        assert r["gmacs"] == pytest.approx(count_gmacs(model), abs=1e-3)
        assert r["device"].startswith("cpu") and r["compile"] is False and r["img_size"] == 16
        assert r["device"].split()[1] == cpu().kind  # the machine class the speed rules key on


def test_recipe_and_timm_name(cli):
    recipe = bench_json(cli, "fashion-deit-ti", "--batch-sizes", "2", "--precision", "fp32", "--repeats", "1")
    code, out, _ = cli("info", "fashion-deit-ti", "--json")
    assert code == 0
    info = json.loads(out)
    assert (recipe[0]["params"], recipe[0]["img_size"]) == (info["params"], 28)
    assert recipe[0]["gmacs"] == pytest.approx(info["gmacs"], abs=1e-3)

    small = bench_json(cli, "deit_tiny_patch16_224", "--img-size", "32", "--batch-sizes", "1", "--precision", "fp32",
                       "--repeats", "1")
    assert small[0]["img_size"] == 32
    assert small[0]["gmacs"] < 0.05  # 4 patches instead of 196: a small fraction of DeiT-Ti's 1.25 GMACs


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--precision", "fp16"], "fp16"),
        (["--precision", "int4"], "unknown precision"),
        (["--batch-sizes", "1,x"], "--batch-sizes"),
        (["--batch-sizes", "0"], "positive"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_bad_options(cli, tiny_model_dir, args, needle):
    code, _, err = cli("bench", tiny_model_dir, *args)
    assert code == 2 and needle in err, err


def test_table_output(cli, tiny_model_dir):
    code, out, err = cli("bench", tiny_model_dir, "--batch-sizes", "2", "--precision", "fp32", "--repeats", "1")
    assert code == 0, err
    assert "img/s" in out and "peak MiB" in out and "fp32" in out


def test_cpu_peak_memory_sees_an_allocation():
    import time

    import numpy as np
    import torch

    from deitctl.evaluation.timing import PeakMemory

    with PeakMemory(torch.device("cpu")) as peak:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert 48 <= peak.mib <= 200


@pytest.mark.parametrize("kind, expected", [("avx2", ["fp32"]), ("avx512", ["fp32"]),
                                            ("amx", ["fp32", "bf16"]), ("avx512-bf16", ["fp32", "bf16"])])
def test_default_precisions_follow_the_hardware(cli, tiny_model_dir, monkeypatch, kind, expected):
    """bf16 is timed by default only where the CPU computes it; where it is emulated the run says why not."""
    import dataclasses

    from deitctl.runtime import hardware

    real = hardware.cpu()
    fake = dataclasses.replace(real, amx=kind == "amx", avx512_bf16=kind == "avx512-bf16",
                               avx512=kind in ("avx512", "avx512-bf16", "amx"))
    monkeypatch.setattr(hardware, "cpu", lambda: fake)
    assert fake.kind == kind
    code, out, err = cli("bench", tiny_model_dir, "--batch-sizes", "2", "--repeats", "1", "--json")
    assert code == 0, err
    assert [r["precision"] for r in json.loads(out)] == expected
    assert ("bf16 is emulated on this CPU" in err) == (expected == ["fp32"])
