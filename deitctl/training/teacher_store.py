"""The teacher's outputs computed once per augmented batch, stored, and read back by every run that needs them.

Students trained on the same images by the same teacher (the main job's hard-class, hard-token and soft-class
students) would otherwise pay for identical teacher forwards each; FKD (Shen & Xing, ECCV 2022) stores them once.

What a teacher computes at a micro-step is fixed by the teacher and by the step's input, and the input by the run's
seed, the epoch, the micro-step in the epoch and the rank — the sample order (sampler: seed, epoch, N, world), each
sample's augmentation (seed, epoch, index, copy) and the batch's Mixup/CutMix draw (``data.transforms.SeededMixup``)
— given the data, the augmentation keys and the batch plan. The store's **key** is a digest of all of these except
(epoch, micro-step, rank), which name the files: ``$DEITCTL_CACHE/teacher-outputs/KEY/eEEEE-rRRRR-cCCCCC.safetensors``
(epoch, rank, chunk). A chunk holds ``CHUNK_IMAGES / micro`` consecutive micro-steps of one process, written
atomically (temporary name, then rename) once all of them are computed, so a reader sees a complete chunk or none;
two runs racing on a chunk both compute it, and the second rename replaces it with the same bytes. A run resumed
inside a chunk computes that chunk's remaining steps without writing it (its first steps were lost with the crash).

Each step also stores a digest of the teacher's input, checked on read: a mismatch means the key missed something
that changes the batch (edited data under the same path, an augmentation change), so the run stops using the store,
says so once, and computes every output itself — never a stale one.

Stored per step: with up to ``FULL_CLASSES`` classes the fp32 logits (hard and soft runs share them; read back they
are bit-identical); with more, hard distillation's labels (int16) or soft distillation's top ``TOPK`` logits (fp16)
and their classes (int16), read back as logits with every other class at ``FILL``: the softened teacher is then the
softmax over those k classes, renormalised. The run that writes them trains on the same top-k targets, so every
student of the store trains alike whether it wrote or read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from deitctl.core.console import log

if TYPE_CHECKING:
    from accelerate import Accelerator

    from deitctl.config.recipe import Recipe
    from deitctl.training.plan import Plan
    from deitctl.training.teacher import Teacher

FORMAT = 2  # bump when what is stored, or how a batch is drawn, changes
CHUNK_IMAGES = 8192  # images per chunk file and process: a resumed run recomputes at most one chunk
FULL_CLASSES = 100  # up to this many classes: full fp32 logits
TOPK = 10  # above it, soft distillation keeps the k largest logits
FILL = -1e30  # the logit of a class outside the top k: exp() of it is 0, and finite, so KL's 0·log 0 stays 0
# every recipe key that changes the teacher's input (the images, their order, their mixing)
AUGMENT_KEYS = ("img_size", "in_chans", "mean", "std", "train_interpolation", "rand_augment", "reprob", "remode",
                "recount", "crop_padding", "repeated_aug", "mixup", "cutmix", "mixup_prob", "mixup_switch_prob",
                "streaming", "shuffle_buffer", "train_split", "seed", "batch_size")


class Run(Protocol):
    """What the store reads of a run's parts (``training.parts.Parts``; a protocol, so this module needs no import of it)."""

    plan: Plan
    accel: Accelerator
    teacher: Teacher | None
    micro: int
    accum: int
    steps_per_epoch: int
    train_loader: Any
    class_names: list[str]
    sizes: tuple[int, int]

    @property
    def recipe(self) -> Recipe: ...


def store_kind(mode: str, num_classes: int) -> str:
    """``logits`` (few classes: hard and soft share them), ``labels`` (hard) or ``topK`` (soft)."""
    if num_classes <= FULL_CLASSES:
        return "logits"
    return "labels" if mode == "hard" else f"top{TOPK}"


def store_on(setting: bool | str, distilled: bool, streaming: bool) -> bool:
    """``auto``: on for every distillation run on map-style data. A stream's batches also depend on its shards and
    its loader's worker layout, which the key can only name, not check cheaply: ``teacher_store: true`` keys them too."""
    if not distilled:
        return False
    return (not streaming) if setting == "auto" else bool(setting)


def store_key(parts: Run, kind: str) -> dict[str, Any]:
    """Everything that fixes the teacher's input and output at a given (epoch, micro-step, rank)."""
    import timm

    from deitctl import __version__

    recipe, opts, teacher = parts.recipe, parts.plan.options, parts.teacher
    assert teacher is not None
    dataset = Path(recipe.dataset)
    return {
        "format": FORMAT, "kind": kind, "deitctl": __version__, "torch": torch.__version__, "timm": timm.__version__,
        "teacher": teacher.fingerprint(), "teacher_precision": teacher.precision, "compiled": teacher.compiled,
        "device": parts.accel.device.type,
        "dataset": str(dataset.resolve()) if dataset.exists() else recipe.dataset, "train_samples": parts.sizes[0],
        "max_train_samples": opts.max_train_samples, "columns": [opts.image_column, opts.label_column],
        "augment": {k: getattr(recipe, k) for k in AUGMENT_KEYS},
        "workers": parts.train_loader.num_workers if recipe.streaming else None,
        "batch": [parts.accel.num_processes, parts.micro, parts.accum, parts.steps_per_epoch],
    }


def input_digest(images: torch.Tensor) -> int:
    """A fingerprint of a batch that any changed bit, a flip and the sample order change: the values' bit patterns
    summed per (image, channel, row) and per (image, channel, column) in int32 — wrapping integer sums, exact in any
    order, so the same for any thread count — and an 8x8 grid of each image's values (an even number of sign flips in
    every row and column cancels in the sums), hashed. One pass over the batch at memory speed: the float64 sums of
    store format 1 cost 14x more (``benchmarks/bench_digest.py``: 262 vs 19 ms per 256x3x224x224 batch, AVX2)."""
    x = images.detach()
    x = x if x.dtype == torch.float32 else x.float()
    bits = x.view(torch.int32)
    parts = [bits]
    if x.dim() >= 3:
        h, w = x.shape[-2:]
        grid = x[..., :: max(1, h // 8), :: max(1, w // 8)]
        parts = [bits.sum(dim=-1, dtype=torch.int32), bits.sum(dim=-2, dtype=torch.int32), grid]
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest(), "little", signed=True)


def encode(logits: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """What is stored of one step's fp32 logits, on the CPU."""
    if kind == "logits":
        return {"logits": logits.detach().cpu()}
    small = torch.int16 if logits.shape[-1] <= 32767 else torch.int32
    if kind == "labels":
        return {"labels": logits.argmax(dim=-1).to(small).cpu()}
    values, indices = logits.topk(TOPK, dim=-1)
    return {"values": values.to(torch.float16).cpu(), "indices": indices.to(small).cpu()}


def decode(stored: dict[str, torch.Tensor], num_classes: int, device: torch.device) -> torch.Tensor:
    """The loss's teacher input back from what is stored: logits, int64 labels, or top-k logits filled with FILL."""
    if "logits" in stored:
        return stored["logits"].to(device)
    if "labels" in stored:
        return stored["labels"].to(device, torch.int64)
    values, indices = stored["values"].to(device, torch.float32), stored["indices"].to(device, torch.int64)
    full = torch.full((*values.shape[:-1], num_classes), FILL, device=device)
    return full.scatter_(-1, indices, values)


def open_store(parts: Run) -> TeacherOutputs | None:
    """The loop's source of teacher outputs, with the store when the recipe has it on; None without a teacher."""
    from deitctl.core.cache import cache_home

    teacher, recipe = parts.teacher, parts.recipe
    if teacher is None:
        return None
    kind = store_kind(recipe.distillation_type, len(parts.class_names))
    outputs = TeacherOutputs(teacher, kind, len(parts.class_names), parts.accel.process_index,
                             parts.steps_per_epoch * parts.accum, max(1, CHUNK_IMAGES // parts.micro))
    if store_on(recipe.teacher_store, recipe.is_distilled, recipe.streaming):
        key = store_key(parts, kind)
        text = json.dumps(key, sort_keys=True, default=str)
        outputs.directory = cache_home() / "teacher-outputs" / hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        outputs.key_text = text
        outputs.cached_at_start = outputs.chunks_present(recipe.epochs)
    return outputs


class TeacherOutputs:
    """Called by the loop for the teacher's output of each micro-batch: read from the store when the chunk is there
    and its input digest matches, else computed (and stored once its chunk is complete)."""

    def __init__(self, teacher: Teacher, kind: str, num_classes: int, rank: int, per_epoch: int, chunk: int) -> None:
        self.teacher, self.kind, self.num_classes, self.rank = teacher, kind, num_classes, rank
        self.per_epoch, self.chunk = per_epoch, chunk  # micro-steps per epoch, per chunk
        self.directory: Path | None = None  # None: no store, every output computed
        self.key_text, self.cached_at_start, self.computed, self.read = "", 0, 0, 0
        self.writable = True
        self._at: tuple[int, int] | None = None  # (epoch, chunk) being read or filled
        self._stored: dict[str, torch.Tensor] | None = None
        self._buffer: list[tuple[dict[str, torch.Tensor], int]] | None = None

    def __call__(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        """The teacher's output for micro-step ``step`` of ``epoch``: logits, or labels for a ``labels`` store."""
        if self.directory is None:
            self.computed += 1
            return self.teacher(images)
        c, i = divmod(step, self.chunk)
        if self._at != (epoch, c):
            self._begin(epoch, c, i)
        digest = input_digest(images) if self._stored is not None or self._buffer is not None else None
        if self._stored is not None and digest is not None:
            if int(self._stored["hashes"][i]) == digest:
                self.read += 1
                return decode({k: v[i] for k, v in self._stored.items()}, self.num_classes, images.device)
            self._give_up(f"the stored input of epoch {epoch + 1} micro-step {step} differs from this run's: the "
                          "store's key misses something that changed the batch; computing every output from here")
            return self(images, epoch, step)
        logits = self.teacher(images)
        self.computed += 1
        step_out = encode(logits, self.kind)
        if self._buffer is not None and digest is not None:
            self._buffer.append((step_out, digest))
            if len(self._buffer) == self._length(c):
                self._write(epoch, c)
        return logits if self.kind == "logits" else decode(step_out, self.num_classes, images.device)

    def path(self, epoch: int, c: int) -> Path:
        assert self.directory is not None
        return self.directory / f"e{epoch:04d}-r{self.rank:04d}-c{c:05d}.safetensors"

    @property
    def chunks_per_epoch(self) -> int:
        return -(-self.per_epoch // self.chunk)

    def chunks_present(self, epochs: int) -> int:
        return sum(self.path(e, c).is_file() for e in range(epochs) for c in range(self.chunks_per_epoch))

    def _length(self, c: int) -> int:
        return min(self.chunk, self.per_epoch - c * self.chunk)

    def _begin(self, epoch: int, c: int, i: int) -> None:
        """Load chunk ``c`` if it is there and whole, else start filling it — from its first step only."""
        from safetensors import safe_open

        self._at, self._stored, self._buffer = (epoch, c), None, None
        path = self.path(epoch, c)
        if path.is_file():
            try:
                with safe_open(str(path), framework="pt") as f:
                    if (f.metadata() or {}).get("key") == self.key_text:
                        self._stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open)
            except Exception as e:  # unreadable: compute, and write a good one over it
                log(f"[yellow]note:[/] teacher-output chunk {path} unreadable ({e}); computing it")
            if self._stored is not None and len(self._stored["hashes"]) == self._length(c):
                return
            self._stored = None
        if i == 0 and self.writable:
            self._buffer = []

    def _write(self, epoch: int, c: int) -> None:
        from safetensors.torch import save_file

        from deitctl.core.atomic import atomic_path

        assert self._buffer is not None
        steps, self._buffer = self._buffer, None
        tensors = {k: torch.stack([out[k] for out, _ in steps]) for k in steps[0][0]}
        tensors["hashes"] = torch.tensor([d for _, d in steps], dtype=torch.int64)
        try:
            with atomic_path(self.path(epoch, c)) as tmp:
                save_file(tensors, str(tmp), metadata={"key": self.key_text})
        except Exception as e:  # out of space, read-only cache: the run goes on computing
            self.writable = False
            log(f"[yellow]note:[/] teacher outputs not stored ({e}); this run computes them without storing")

    def _give_up(self, why: str) -> None:
        log(f"[yellow]warning:[/] teacher-output store {self.directory}: {why}")
        self.directory, self._stored, self._buffer = None, None, None

    def describe(self, epochs: int) -> str:
        """For the run's speed line."""
        if self.directory is None:
            return "computed (store off)"
        total = epochs * self.chunks_per_epoch
        return f"stored, {self.cached_at_start} of {total} chunks already there ({self.directory})"

    def summary(self) -> dict[str, Any]:
        return {"store": str(self.directory) if self.directory else None, "kind": self.kind,
                "computed": self.computed, "read": self.read}
