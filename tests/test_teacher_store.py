"""The teacher's outputs stored once per augmented batch (deitctl.training.teacher_store): read back bit-identical,
shared by hard and soft students, invalidated by another teacher or other data, per process, and resumable."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import QUAD, _free_port, _subprocess_env, assert_same_weights

# QUAD with the batch-level Mixup/CutMix on (the main job's students mix): the store keys its seeded draw
MIXED = [*QUAD, "--set", "mixup=0.8", "--set", "cutmix=1.0", "--set", "compile=false", "--epochs", "2",
         "--batch-size", "16"]


class CountingTeacher(torch.nn.Module):
    """A stand-in teacher: fixed random logits of the input, counting its forwards."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, classes)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x.reshape(x.shape[0], -1)[:, :16]) * 5


def _outputs(teacher, kind: str, classes: int, directory: Path):
    from deitctl.training.teacher_store import TeacherOutputs

    out = TeacherOutputs(teacher, kind, classes, rank=0, per_epoch=6, chunk=4)  # chunks of 4 and 2 micro-steps
    out.directory, out.key_text = directory, "test-key"
    return out


def _batches(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 1, 4, 4, generator=g) for _ in range(6)]


@pytest.mark.parametrize(("kind", "classes"), [("logits", 10), ("labels", 200), ("top10", 200)])
def test_outputs_read_back_are_bit_identical_to_those_computed_in_the_step(tmp_path, kind, classes):
    from deitctl.training.losses import distillation_loss
    from deitctl.training.teacher_store import FILL, TOPK

    torch.manual_seed(0)
    teacher = CountingTeacher(classes)
    writer = _outputs(teacher, kind, classes, tmp_path)
    written = [writer(x, epoch=0, step=i) for i, x in enumerate(_batches())]
    assert teacher.calls == 6 and writer.computed == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e0000-r0000-c00000.safetensors",
                                                          "e0000-r0000-c00001.safetensors"]
    reader = _outputs(teacher, kind, classes, tmp_path)
    read = [reader(x, epoch=0, step=i) for i, x in enumerate(_batches())]
    assert teacher.calls == 6 and (reader.read, reader.computed) == (6, 0)
    student = torch.randn(8, classes)
    for x, w, r in zip(_batches(), written, read, strict=True):
        logits = CountingTeacher.forward(teacher, x)
        assert torch.equal(w, r)
        if kind == "logits":  # the fp32 logits themselves: both losses exactly as without a store
            assert torch.equal(r, logits)
        elif kind == "labels":
            assert r.dtype == torch.int64 and torch.equal(r, logits.argmax(-1))
        else:  # soft over the top k, renormalised: the other classes get exactly 0
            values, indices = logits.topk(TOPK, dim=-1)
            assert torch.equal(r.topk(TOPK, dim=-1).indices.sort().values, indices.sort().values)
            assert (r == FILL).sum().item() == 8 * (classes - TOPK)
            p = torch.softmax(r / 3, dim=-1)
            want = torch.softmax(values.half().float() / 3, dim=-1)
            assert torch.allclose(p.gather(-1, indices), want.detach(), rtol=1e-6, atol=0)  # fp16 logits
            assert p.sum().item() == pytest.approx(8) and p.scatter(-1, indices, 0.0).max().item() == 0.0
            assert torch.isfinite(distillation_loss(student, torch.zeros(8, dtype=torch.long), r, "soft", tau=3.0))
        mode = "hard" if kind != "top10" else "soft"
        assert torch.equal(distillation_loss(student, torch.zeros(8, dtype=torch.long), r, mode),
                           distillation_loss(student, torch.zeros(8, dtype=torch.long), w, mode))


def test_an_input_that_differs_from_the_stored_one_is_computed_never_read(tmp_path, capsys):
    teacher = CountingTeacher(10)
    writer = _outputs(teacher, "logits", 10, tmp_path)
    for i, x in enumerate(_batches()):
        writer(x, epoch=0, step=i)
    changed = _batches()
    changed[1][3, 0, 2, 2] += 0.01  # one pixel of one image of the second step
    reader = _outputs(teacher, "logits", 10, tmp_path)
    got = [reader(x, epoch=0, step=i) for i, x in enumerate(changed)]
    assert (reader.read, reader.computed, reader.directory) == (1, 5, None)  # it stops using the store
    assert all(torch.equal(g, CountingTeacher.forward(teacher, x)) for g, x in zip(got, changed, strict=True))
    assert "differs from this run's" in capsys.readouterr().err
    order = _batches()  # the same images in another order within the batch
    order[0] = order[0].flip(0)
    reread = _outputs(teacher, "logits", 10, tmp_path)
    reread(order[0], epoch=0, step=0)
    assert (reread.read, reread.computed) == (0, 1)


def test_the_input_digest_sees_every_bit_and_flip_but_not_the_thread_count():
    from deitctl.training.teacher_store import input_digest

    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    digest = input_digest(x)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert input_digest(x) == digest
    finally:
        torch.set_num_threads(threads)
    assert input_digest(x.contiguous(memory_format=torch.channels_last)) == digest
    last_bit = x.clone()
    last_bit.view(torch.int32)[2, 1, 5, 7] ^= 1  # the least significant bit of one value
    flipped = x.clone()
    flipped[1] = flipped[1].flip(-1)
    # -x flips every value's sign bit, which cancels in the int32 sums of an even number of values
    others = {input_digest(last_bit), input_digest(flipped), input_digest(x[[1, 0, 2, 3]]), input_digest(-x)}
    assert digest not in others and len(others) == 4


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "teacher-outputs"


def _train(cli, recipe: str, data: Path, teacher: Path, out: Path, *extra: str) -> dict:
    code, _, err = cli("train", recipe, "--dataset", data, "--teacher", teacher, "--out", out, *MIXED, *extra)
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())["teacher_outputs"]


def test_the_second_student_reads_every_output_and_trains_bit_identically(cli, tiny_data, tiny_model_dir, tmp_path,
                                                                          cache, monkeypatch):
    from deitctl.training.teacher import Teacher

    first = _train(cli, "fashion-deit-ti-distilled", tiny_data, tiny_model_dir, tmp_path / "first")
    assert (first["kind"], first["computed"], first["read"]) == ("logits", 8, 0)  # 2 epochs × 4 steps
    store = Path(first["store"])
    assert store.parent == cache and len(list(store.glob("e*-r0000-c00000.safetensors"))) == 2
    forwards = []
    real = Teacher.forward
    monkeypatch.setattr(Teacher, "forward", lambda self, x: forwards.append(1) or real(self, x))
    second = _train(cli, "fashion-deit-ti-distilled", tiny_data, tiny_model_dir, tmp_path / "second")
    assert (second["store"], second["computed"], second["read"], forwards) == (first["store"], 0, 8, [])
    off = _train(cli, "fashion-deit-ti-distilled", tiny_data, tiny_model_dir, tmp_path / "off",
                 "--set", "teacher_store=false")
    assert (off["store"], off["computed"], len(forwards)) == (None, 8, 8)
    assert_same_weights(tmp_path / "off", tmp_path / "first")
    assert_same_weights(tmp_path / "off", tmp_path / "second")
    # the main job's soft student on the same images, from the same (fp32) teacher: the hard students' logits
    soft = _train(cli, "fashion-deit-ti-soft", tiny_data, tiny_model_dir, tmp_path / "soft")
    assert (soft["store"], soft["computed"], soft["read"]) == (first["store"], 0, 8)


def test_another_teacher_or_other_data_or_augmentation_is_not_read(cli, tiny_data, tiny_model_dir, tmp_path, cache):
    from deitctl.models.store import save_model_dir
    from tests.conftest import CLASSES, make_tiny_model

    base = _train(cli, "fashion-deit-ti-distilled", tiny_data, tiny_model_dir, tmp_path / "base", "--epochs", "1")
    other = tmp_path / "other-teacher"
    save_model_dir(make_tiny_model(False, seed=1), other, label_names=CLASSES, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    changes = {"teacher": (other,), "data": ("--max-train-samples", "48"), "augmentation": ("--set", "reprob=0.25"),
               "precision": ("--set", "teacher_precision=bf16")}
    stores = {base["store"]}
    for name, change in changes.items():
        teacher = change[0] if name == "teacher" else tiny_model_dir
        extra = () if name == "teacher" else change
        got = _train(cli, "fashion-deit-ti-distilled", tiny_data, teacher, tmp_path / name, "--epochs", "1", *extra)
        assert got["read"] == 0 and got["computed"] == (3 if name == "data" else 4), name
        stores.add(got["store"])
    assert len(stores) == 5 and {p.name for p in cache.iterdir()} == {Path(s).name for s in stores}


def test_a_run_resumed_mid_epoch_with_the_store_equals_the_uninterrupted_one(tiny_data, tiny_model_dir, tmp_path,
                                                                              monkeypatch):
    from deitctl.app.train import TrainRequest, run
    from deitctl.training import teacher_store
    from deitctl.training.plan import RunOptions

    monkeypatch.setattr(teacher_store, "CHUNK_IMAGES", 48)  # chunks of 3 steps and 1: epochs of 4 steps hold 2
    sets = [s for flag, s in itertools.pairwise(MIXED) if flag == "--set"] + ["checkpoint_every=1"]

    def train(out: Path, cache: str, on_step=None, resume: bool = False) -> dict:
        monkeypatch.setenv("DEITCTL_CACHE", str(tmp_path / cache))
        opts = RunOptions(resume=out) if resume else RunOptions(out=out, dataset=str(tiny_data), epochs=2,
                                                                batch_size=16, teacher=str(tiny_model_dir), sets=sets)
        return run(TrainRequest(None if resume else "fashion-deit-ti-distilled", opts, on_step=on_step))

    train(tmp_path / "straight", "cache-a")

    def crash_at_step_5(state, loss):  # epoch 2, its second step: its first chunk half done, not written
        if state.global_step == 5:
            raise RuntimeError("simulated crash")
        return loss

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path / "cut", "cache-b", crash_at_step_5)
    summary = train(tmp_path / "cut", "cache-b", resume=True)
    assert_same_weights(tmp_path / "straight", tmp_path / "cut")
    assert (summary["teacher_outputs"]["computed"], summary["teacher_outputs"]["read"]) == (3, 0)
    names = sorted(p.name for p in Path(summary["teacher_outputs"]["store"]).iterdir())
    assert names == [f"e000{e}-r0000-c0000{c}.safetensors" for e, c in ((0, 0), (0, 1), (1, 1))]  # not the cut one
    with pytest.raises(RuntimeError, match="simulated crash"):  # the same while reading a full store
        train(tmp_path / "cut-reading", "cache-a", crash_at_step_5)
    summary = train(tmp_path / "cut-reading", "cache-a", resume=True)
    assert (summary["teacher_outputs"]["computed"], summary["teacher_outputs"]["read"]) == (0, 3)
    assert_same_weights(tmp_path / "straight", tmp_path / "cut-reading")


@pytest.mark.slow
def test_two_processes_write_and_read_their_own_chunks(tiny_data, tiny_model_dir, tmp_path):
    env = dict(_subprocess_env(threads=1), DEITCTL_CACHE=str(tmp_path / "cache"))
    for name in ("first", "second"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "deitctl.cli", "train", "fashion-deit-ti-distilled", "--dataset", str(tiny_data),
               "--teacher", str(tiny_model_dir), "--out", str(tmp_path / name), *MIXED]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    first, second = (json.loads((tmp_path / n / "summary.json").read_text())["teacher_outputs"]
                     for n in ("first", "second"))
    assert (first["computed"], first["read"]) == (16, 0)  # 2 processes × 2 epochs × 4 micro-batches of 8
    assert (second["store"], second["computed"], second["read"]) == (first["store"], 0, 16)
    names = sorted(p.name for p in Path(first["store"]).iterdir())
    assert names == [f"e000{e}-r000{r}-c00000.safetensors" for e in (0, 1) for r in (0, 1)]
    assert_same_weights(tmp_path / "first", tmp_path / "second")
