"""Everything a run trains with, built from its plan: accelerator, data, model, teacher, optimizer, state.

``setup(plan)`` is the whole of it, read top to bottom; the loop (``deitctl.training.loop``) then only
runs. The same code serves a CPU, one GPU or many GPUs/nodes under ``accelerate launch``: global batch
= processes × micro-batch × accumulation, and lr = base lr × global batch / 512 (the paper's rule).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from deitctl.core.console import log
from deitctl.training.plan import Plan, batch_plan

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import nn

    from deitctl.config.recipe import Recipe
    from deitctl.data.loaders import EpochSampler
    from deitctl.data.streaming import StreamLoader
    from deitctl.training.teacher import Teacher
    from deitctl.training.teacher_store import TeacherOutputs


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint, so resume continues at this exact step."""

    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps done in ``epoch``
    global_step: int = 0
    wall_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[list[float]] = field(default_factory=list)  # [step, loss] of this epoch's optimizer steps


@dataclass
class Parts:
    plan: Plan
    accel: Accelerator
    precision: str
    micro: int  # per-process batch of one forward pass
    accum: int  # forward passes per optimizer step
    steps_per_epoch: int
    train_loader: Any
    epoch_sampler: EpochSampler | StreamLoader  # set_epoch(epoch, skip) before each epoch
    eval_loader: Any
    mixup: Any
    model: nn.Module
    teacher: Teacher | None
    optimizer: torch.optim.Optimizer
    ema: Any
    loss: Callable[..., torch.Tensor]  # (outputs, targets, teacher logits) → loss
    class_names: list[str]
    sizes: tuple[int, int]  # training and eval samples
    params: int
    gmacs: float
    attention: str
    compile_student: bool
    checkpoint_writer: bool = True  # writes the weights into checkpoints: rank 0, or a machine with its own disk
    state: TrainState = field(default_factory=TrainState)
    rng: dict[str, Any] | None = None  # the checkpoint's random state, restored just before its next step
    teach: TeacherOutputs | None = None  # the teacher's output of a micro-batch: stored once, or computed

    @property
    def recipe(self) -> Recipe:
        return self.plan.recipe

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.recipe.epochs

    @property
    def warmup_steps(self) -> int:
        return round(self.recipe.warmup_epochs * self.steps_per_epoch)


def setup(plan: Plan) -> Parts:
    """Build every part of the run, restore its checkpoint when resuming, and compile what is compiled."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from deitctl.models.inspect import count_gmacs, count_params
    from deitctl.runtime.attention import resolve_attention, set_attention
    from deitctl.runtime.compile import compile_in_place, fresh_compiler, resolve_compile_student
    from deitctl.runtime.precision import resolve_precision
    from deitctl.training import nodes
    from deitctl.training.inputs import build_inputs
    from deitctl.training.losses import distillation_loss
    from deitctl.training.optim import make_optimizer

    recipe, opts = plan.recipe, plan.options
    _fresh_accelerate_state()
    fresh_compiler()
    cpu = opts.cpu or not torch.cuda.is_available()  # accelerate only forms a CPU process group when told
    precision = resolve_precision(recipe.precision, torch.device("cpu" if cpu else "cuda"))
    accel = Accelerator(mixed_precision={"fp32": "no"}.get(precision, precision), cpu=cpu)
    writer = nodes.keep_local_copy(plan, accel, nodes.sees_main_run_dir(plan, accel))
    plan.resume_from = nodes.common_checkpoint(plan, accel)
    micro, accum = batch_plan(recipe.batch_size, accel.num_processes, opts.per_device_batch)
    set_seed(recipe.seed)  # identical model init on every process
    data = build_inputs(plan, accel, micro, accum)
    model = _student(recipe, len(data["class_names"]), accel.is_main_process)
    kind = resolve_attention(recipe.attention, accel.device)
    set_attention(model, kind)
    teacher = _teacher(recipe, len(data["class_names"]), accel.device, precision)
    params, gmacs = count_params(model), count_gmacs(model, recipe.img_size, recipe.in_chans)
    optimizer = make_optimizer(model, recipe, recipe.effective_lr)
    ema = None
    if recipe.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=recipe.ema_decay)
    loss = functools.partial(distillation_loss, mode=recipe.distillation_type, alpha=recipe.distillation_alpha,
                             tau=recipe.distillation_tau, soft_reduction=recipe.soft_reduction,
                             both_heads=recipe.label_both_heads,
                             label_smoothing=0.0 if data["mixup"] is not None else recipe.label_smoothing)
    parts = Parts(plan, accel, precision, micro, accum, model=model, teacher=teacher, optimizer=optimizer, ema=ema,
                  loss=loss, params=params, gmacs=gmacs, attention=kind, compile_student=False, checkpoint_writer=writer,
                  **data)
    _resume(parts)
    parts.compile_student = resolve_compile_student(recipe.compile_student, parts.total_steps)
    if parts.compile_student:
        compile_in_place(model)
    parts.model, parts.optimizer = accel.prepare(model, optimizer)
    if ema is not None:
        ema.to(accel.device)
    _warm_up(parts)
    from deitctl.training.teacher_store import open_store

    parts.teach = open_store(parts)  # after the warm-up: the key names whether the teacher compiled
    return parts


def _student(recipe: Recipe, num_classes: int, main: bool) -> nn.Module:
    """A fresh model from the recipe, or — when fine-tuning — the ``init_from`` model adapted to the data."""
    from deitctl.models.factory import create_model
    from deitctl.models.inspect import is_distilled
    from deitctl.models.refs import load_model

    if recipe.init_from:
        from accelerate.utils import set_seed

        from deitctl.models.refs import fetch

        fetch(recipe.init_from)  # a download (and its check, which builds a model) draws random numbers:
        set_seed(recipe.seed)  # seed after it, so the new head is the same whether the model was cached or not
        extra: dict[str, Any] = {"drop_path_rate": recipe.drop_path} if recipe.drop_path else {}
        model = load_model(recipe.init_from, num_classes=num_classes, img_size=recipe.img_size, **extra).model.train()
    else:
        model = create_model(recipe, num_classes)
    if is_distilled(model):
        model.set_distilled_training(True)  # forward returns (class, distillation) logits while training
        if not recipe.is_distilled and main:
            learns = "both heads learn the labels" if recipe.label_both_heads else "only the class head learns (read top1_cls)"
            log(f"[yellow]note:[/] a distilled model trained without a teacher: {learns}; pass --teacher MODEL to keep "
                "distillation (the paper fine-tunes ⚗ models that way)")
    return model


def _teacher(recipe: Recipe, num_classes: int, device: torch.device, precision: str) -> Teacher | None:
    from deitctl.training.teacher import load_teacher

    if not recipe.is_distilled:
        return None
    from deitctl.runtime.precision import resolve_teacher_precision
    from deitctl.runtime.rules import resolve_compile_frozen

    teacher = load_teacher(recipe.teacher, num_classes, recipe.in_chans, recipe.mean, recipe.std)
    precision = resolve_teacher_precision(recipe.teacher_precision, recipe.distillation_type, precision)
    return teacher.prepare(device, precision, resolve_compile_frozen(recipe.compile, precision, device))


def _resume(parts: Parts) -> None:
    """Load the checkpoint to resume from into the (not yet prepared) model, optimizer and EMA."""
    from deitctl.training import checkpoint

    if parts.plan.resume_from is None:
        return
    weights, saved, parts.rng, position = checkpoint.load(parts.plan.resume_from, parts.accel.process_index)
    if position is not None:  # a stream's position on this process
        parts.epoch_sampler.load_state_dict(position)
    parts.model.load_state_dict(weights)
    parts.optimizer.load_state_dict(saved["optimizer"])
    if parts.ema is not None and "ema" in saved:
        parts.ema.load_state_dict(saved["ema"])
    parts.state = TrainState(**saved["trainer"])


def _warm_up(parts: Parts) -> None:
    """Compile now, on zeros, not inside the first timed step; the run's random state is left untouched."""
    from deitctl.runtime.compile import first_call

    recipe, accel = parts.recipe, parts.accel
    example = torch.zeros(parts.micro, recipe.in_chans, recipe.img_size, recipe.img_size, device=accel.device)
    if parts.teacher is not None and parts.teacher.compiled:
        parts.teacher.compiled = first_call(parts.teacher.model, lambda: parts.teacher(example), "teacher",
                                            frozen=True)
    if parts.compile_student:
        first_call(accel.unwrap_model(parts.model), lambda: warm_up_step(parts.model, parts.optimizer, example, accel),
                   "student")


def warm_up_step(model: nn.Module, optimizer: torch.optim.Optimizer, example: torch.Tensor, accel: Accelerator) -> None:
    """One forward+backward on zeros; the run's random state (drop-path draws) and gradients are left as if
    it never happened."""
    from deitctl.runtime.rng import preserved_rng

    with preserved_rng():
        with accel.autocast():
            outputs = model(example)
        loss = sum(o.float().sum() for o in (outputs if isinstance(outputs, tuple) else (outputs,)))
        loss.backward()
    optimizer.zero_grad(set_to_none=True)


def _fresh_accelerate_state() -> None:
    """Let each run in one Python process pick its own precision (accelerate keeps a singleton).

    The process-group part (``PartialState``) is kept: it belongs to the launcher, not to the run.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
