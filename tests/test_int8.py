"""`--precision int8`: static int8 inference (runtime.quantize) — close to fp32, calibrated on training images
never on the images it scores, and refused with a one-line error wherever it cannot run."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import make_tiny_model
from test_evaluate import eval_json, hand_inputs, quick_train, save

pytest.importorskip("torchao", reason="the int8 extra (deitctl[int8]) is not installed")
FP32 = ("--precision", "fp32")


@pytest.fixture(scope="module")
def distilled_dir(tiny_data, tmp_path_factory):
    return save(quick_train(make_tiny_model(True, seed=1), tiny_data), tmp_path_factory.mktemp("int8") / "distilled")


def test_int8_eval_is_close_to_fp32_and_calibrates_on_the_train_split(cli, distilled_dir, tiny_data, monkeypatch):
    import torch

    from deitctl.runtime import quantize

    seen: list[torch.Tensor] = []
    real = quantize.quantize_int8

    def recording(module, example, calibration):
        batches = list(calibration)
        seen.extend(batches)
        return real(module, example, batches)

    monkeypatch.setattr(quantize, "quantize_int8", recording)
    args = (distilled_dir, "--dataset", tiny_data, "--split", "test", "--batch-size", "6")
    fp32 = eval_json(cli, *args, *FP32)
    int8 = eval_json(cli, *args, "--precision", "int8")  # 32 = 5 × 6 + 2: the last batch padded, not recompiled
    assert int8["precision"] == "int8" and int8["compile"] is True and int8["num_samples"] == 32
    for key in ("top1", "top1_cls", "top1_dist"):  # one image of 32 is 3.1 points
        assert abs(int8[key] - fp32[key]) <= 100 / 32 + 1e-6, (key, int8[key], fp32[key])
    assert int8["loss"] == pytest.approx(fp32["loss"], rel=0.1)
    # calibrated on the 64 training images (batches of 6, the last padded with zeros), none of the 32 scored
    train, test = hand_inputs(tiny_data, "train")[0], hand_inputs(tiny_data, "test")[0]
    images = torch.cat(seen)
    assert images.shape == (66, *train.shape[1:]) and images[64:].abs().sum() == 0

    def matches(a, b):  # a[i] equals some image of b
        return ((a[:, None] - b[None]).flatten(2).abs().amax(2) < 1e-4).any(1)

    assert matches(images[:64], train).all() and matches(train, images[:64]).all()
    assert not matches(images[:64], test).any()


def test_int8_bench_row_is_quantized_and_compiled(cli, tiny_model_dir):
    code, out, err = cli("bench", tiny_model_dir, "--batch-sizes", "4", "--precision", "fp32,int8", "--repeats", "2",
                         "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["precision"], r["compile"]) for r in rows] == [("fp32", False), ("int8", True)]
    assert all(r["img_per_s"] > 0 for r in rows)


def test_int8_without_torchao_names_the_extra(cli, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e.quantize_pt2e", None)  # import fails
    code, _, err = cli("bench", tiny_model_dir, "--batch-sizes", "2", "--precision", "int8")
    assert code == 2 and "torchao" in err and "deitctl[int8]" in err and "Traceback" not in err, err


def test_int8_is_refused_where_it_cannot_run(cli, tiny_model_dir, tiny_data, tmp_path):
    import torch

    from deitctl.core.errors import UsageError
    from deitctl.evaluation.metrics import evaluate
    from deitctl.models.types import LoadedModel
    from deitctl.runtime.precision import autocast

    onnx = LoadedModel(make_tiny_model(), "deit", "model.onnx", runtime="onnxruntime")
    with pytest.raises(UsageError, match="--quantize int8"):
        onnx.check_runtime("int8", False)
    with pytest.raises(UsageError, match="CPU"):
        autocast("int8", "cuda")
    with pytest.raises(UsageError, match="will not train again"):  # between training epochs
        evaluate(make_tiny_model(), [(torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long))], precision="int8")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (16, 16)).save(image)
    code, _, err = cli("predict", tiny_model_dir, str(image), "--precision", "int8")
    assert code == 2 and "deitctl eval and bench" in err, err
    code, _, err = cli("train", "fashion-deit-ti", "--set", "precision=int8", "--out", str(tmp_path / "run"))
    assert code == 2 and "precision" in err, err
