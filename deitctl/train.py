"""The training loop: train, distill through attention, fine-tune — one accelerate loop for all.

Read top to bottom: resolve the run (recipe, run directory, resume point), plan the batch
(global batch = processes × micro-batch × accumulation; lr = base lr × global batch / 512), build
data, model, teacher and optimizer, then loop epochs → steps, evaluating and checkpointing as the
recipe says. The same code runs on a CPU, one GPU, or many GPUs/nodes under ``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from deitctl import checkpoint
from deitctl.atomic import write_text
from deitctl.console import log, progress
from deitctl.errors import DeitctlError, UsageError
from deitctl.losses import distillation_loss
from deitctl.recipes import Recipe
from deitctl.runlog import RunLog
from deitctl.runsetup import RunOptions, batch_plan, build_model, make_optimizer, resolve_run


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint, so resume continues at this exact step."""

    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps done in ``epoch``
    global_step: int = 0
    wall_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def lr_at(step: int, total: int, warmup: int, recipe: Recipe, peak: float) -> float:
    """Linear warmup from warmup_lr, then cosine down to min_lr; a pure function of the step."""
    if step < warmup:
        return recipe.warmup_lr + (peak - recipe.warmup_lr) * step / warmup
    if recipe.scheduler == "constant":
        return peak
    progress_ = (step - warmup) / max(1, total - warmup)
    return recipe.min_lr + 0.5 * (peak - recipe.min_lr) * (1 + math.cos(math.pi * min(1.0, progress_)))


def train(recipe_ref: str, opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final summary (also written to summary.json)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from deitctl import speed
    from deitctl.data import load_split, subset
    from deitctl.evaluate import build_eval_loader, evaluate
    from deitctl.models import count_gmacs, count_params, is_distilled
    from deitctl.sampler import RepeatAugSampler
    from deitctl.samples import collate, with_transform
    from deitctl.teacher import load_teacher
    from deitctl.trainloader import WaitTimer, build_train_loader
    from deitctl.transforms import make_mixup, train_transform

    recipe, run_dir, resume_from = resolve_run(recipe_ref, opts)
    _fresh_accelerate_state()
    speed.fresh_compiler()
    cpu = opts.cpu or not torch.cuda.is_available()  # accelerate only forms a CPU process group when told
    precision = speed.resolve_precision(recipe.precision, torch.device("cpu" if cpu else "cuda"))
    accel = Accelerator(mixed_precision={"fp32": "no"}.get(precision, precision), cpu=cpu)
    world, rank, main = accel.num_processes, accel.process_index, accel.is_main_process
    micro, accum = batch_plan(recipe.batch_size, world, opts.per_device_batch)
    peak_lr = recipe.effective_lr
    set_seed(recipe.seed)  # identical model init on every process

    # ---- data
    train_split = subset(load_split(recipe.dataset, recipe.train_split, opts.image_column, opts.label_column),
                         opts.max_train_samples, recipe.seed)
    eval_split = subset(load_split(recipe.dataset, recipe.eval_split, opts.image_column, opts.label_column),
                        opts.max_eval_samples, recipe.seed)
    num_classes = train_split.num_classes  # the data decides; a recipe's num_classes only describes its default data
    sampler = RepeatAugSampler(len(train_split), world, rank, repeats=recipe.repeated_aug, seed=recipe.seed)
    train_ds = with_transform(train_split, train_transform(recipe), recipe.in_chans)
    train_loader, epoch_sampler = build_train_loader(train_ds, sampler, micro, recipe.num_workers, recipe.seed,
                                                     collate, pin_memory=accel.device.type == "cuda")
    steps_per_epoch = len(sampler) // (micro * accum)
    if steps_per_epoch == 0:
        raise UsageError(f"{len(train_split)} training samples make no full batch of {recipe.batch_size}; "
                         "lower --batch-size or use more data")
    eval_config = {"input_size": (recipe.in_chans, recipe.img_size, recipe.img_size), "mean": recipe.mean,
                   "std": recipe.std, "crop_pct": recipe.eval_crop_pct, "interpolation": "bicubic"}
    eval_loader = accel.prepare_data_loader(
        build_eval_loader(eval_split, eval_config, max(micro, 64), recipe.num_workers), device_placement=True)
    mixup = make_mixup(recipe, num_classes)

    # ---- model, teacher, optimizer
    model = build_model(recipe, num_classes)
    attention = speed.resolve_attention(recipe.attention, accel.device)
    speed.set_attention(model, attention)
    distilled_model = is_distilled(model)
    if recipe.is_distilled and not distilled_model:
        raise UsageError(f"{recipe.distillation_type} distillation needs a model with a distillation token, "
                         f"not '{recipe.model}'; use a deit_*_distilled_* model (--set model=...)")
    if distilled_model:
        model.set_distilled_training(True)  # forward returns (class, distillation) logits while training
        if not recipe.is_distilled and main:
            log("[yellow]note:[/] a distilled model trained without a teacher: only the class head learns, so read "
                "top1_cls; pass --teacher MODEL to keep distillation (the paper fine-tunes ⚗ models that way)")
    teacher = None
    if recipe.is_distilled:
        if not recipe.teacher:
            raise UsageError("distillation needs a teacher: pass --teacher MODEL or --set teacher=...")
        teacher = load_teacher(recipe.teacher, num_classes, recipe.in_chans, recipe.mean, recipe.std)
        teacher.prepare(accel.device, precision, recipe.compile)
    params, gmacs = count_params(model), count_gmacs(model, recipe.img_size, recipe.in_chans)
    optimizer = make_optimizer(model, recipe, peak_lr)
    ema = None
    if recipe.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=recipe.ema_decay)

    state, rng = TrainState(), None
    if resume_from is not None:
        weights, saved, rng = checkpoint.load(resume_from, rank)
        model.load_state_dict(weights)
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and "ema" in saved:
            ema.load_state_dict(saved["ema"])
        state = TrainState(**saved["trainer"])
    total_steps, warmup_steps = steps_per_epoch * recipe.epochs, round(recipe.warmup_epochs * steps_per_epoch)
    compile_student = speed.resolve_compile_student(recipe.compile_student, total_steps)
    if compile_student:
        speed.compile_in_place(model)
    model, optimizer = accel.prepare(model, optimizer)
    if ema is not None:
        ema.to(accel.device)
    example = torch.zeros(micro, recipe.in_chans, recipe.img_size, recipe.img_size, device=accel.device)
    if teacher is not None and recipe.compile:
        speed.first_call(teacher.model, lambda: teacher(example), "teacher", frozen=True)
    if compile_student:
        speed.first_call(accel.unwrap_model(model), lambda: _warm_up_step(model, optimizer, example, accel), "student")
    runlog = RunLog(run_dir, main, state.history)
    if main:
        log(f"[bold]{recipe.name}[/] → {run_dir}  |  {recipe.model} ({params / 1e6:.2f} M params, {gmacs:.3f} GMACs)"
            f"  |  data {recipe.dataset}: {len(train_split)} train / {len(eval_split)} eval, {num_classes} classes")
        log(f"processes {world} × micro-batch {micro} × accumulation {accum} = global batch {recipe.batch_size}  |  "
            f"lr {recipe.lr:g} × {recipe.batch_size}/{recipe.lr_base_batch} = {peak_lr:.3g}  |  precision {precision}  "
            f"|  distillation {recipe.distillation_type}" + (f" from {recipe.teacher}" if teacher is not None else ""))
        log(f"speed: attention {attention}  |  compile teacher {recipe.compile and teacher is not None}, student "
            f"{compile_student}  |  fused optimizer {recipe.fused_optimizer}  |  data workers {recipe.num_workers}"
            + (f"  |  resuming at epoch {state.epoch + 1} step {state.step_in_epoch}" if resume_from else ""))

    def save_checkpoint() -> None:
        payload = {"optimizer": optimizer.state_dict(), "trainer": asdict(state)}
        if ema is not None:
            payload["ema"] = ema.state_dict()
        checkpoint.save(run_dir, state.global_step, accel.unwrap_model(model).state_dict(), payload,
                        rank, main, accel.wait_for_everyone)

    loss_kwargs = dict(mode=recipe.distillation_type, alpha=recipe.distillation_alpha, tau=recipe.distillation_tau,
                       label_smoothing=0.0 if mixup is not None else recipe.label_smoothing)
    run_start = time.perf_counter() - state.wall_time_s
    with progress() as bars:
        for epoch in range(state.epoch, recipe.epochs):
            epoch_sampler.set_epoch(epoch, skip=state.step_in_epoch * accum * micro)
            task = bars.add_task(f"epoch {epoch + 1}/{recipe.epochs}", total=steps_per_epoch * recipe.batch_size,
                                 completed=state.step_in_epoch * recipe.batch_size, info="")
            model.train()
            loss_sum, loss_count, seen, t0 = torch.zeros((), device=accel.device), 0, 0, time.perf_counter()
            batches = WaitTimer(iter(train_loader))  # workers start here; restore the RNG after, as the original run had it
            if rng is not None:
                checkpoint.set_rng_state(rng)
                rng = None
            for micro_step, (images, targets) in enumerate(batches):
                if state.step_in_epoch >= steps_per_epoch:
                    break
                images, targets = images.to(accel.device, non_blocking=True), targets.to(accel.device)
                if mixup is not None:
                    images, targets = mixup(images, targets)
                sync = (micro_step + 1) % accum == 0
                teacher_logits = teacher(images) if teacher is not None else None  # in its own precision
                with contextlib.nullcontext() if sync else accel.no_sync(model):
                    with accel.autocast():
                        outputs = model(images)
                        loss = distillation_loss(outputs, targets, teacher_logits, **loss_kwargs)
                    accel.backward(loss / accum)
                loss_sum += loss.detach().float()
                loss_count += 1
                seen += images.shape[0]
                if not sync:
                    continue
                if not bool(accel.reduce(torch.isfinite(loss_sum).float(), "min")):
                    raise DeitctlError(
                        f"non-finite loss at epoch {epoch + 1} step {state.step_in_epoch + 1}; stopped. The last good "
                        f"checkpoint is kept in {run_dir / 'checkpoints'}: lower the lr (--set lr=…) or clip gradients "
                        f"(--set clip_grad=1.0), then `deitctl train {recipe.name} --resume {run_dir}`")
                if recipe.clip_grad:
                    accel.clip_grad_norm_(model.parameters(), recipe.clip_grad)
                lr = lr_at(state.global_step, total_steps, warmup_steps, recipe, peak_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.step_in_epoch += 1
                if ema is not None:
                    ema.update(accel.unwrap_model(model), step=state.global_step)
                rate = seen * world / (time.perf_counter() - t0)
                bars.update(task, advance=recipe.batch_size, rate=rate,
                            info=f"loss {loss_sum.item() / loss_count:.4f}  lr {lr:.2e}")
                if recipe.checkpoint_every and state.global_step % recipe.checkpoint_every == 0 \
                        and state.step_in_epoch < steps_per_epoch:
                    state.wall_time_s = time.perf_counter() - run_start
                    save_checkpoint()

            # ---- end of epoch: metrics, evaluation, checkpoint
            epoch_time = time.perf_counter() - t0
            train_loss = accel.reduce(loss_sum / max(1, loss_count), "mean").item()
            row: dict[str, Any] = {"epoch": epoch + 1, "step": state.global_step, "train_loss": train_loss,
                                   "lr": optimizer.param_groups[0]["lr"], "img_per_s": seen * world / epoch_time,
                                   "epoch_time_s": epoch_time, "data_wait_s": batches.waited_s}
            last = epoch + 1 == recipe.epochs
            if last or (recipe.eval_every and (epoch + 1) % recipe.eval_every == 0):
                with speed.eager(accel.unwrap_model(model)):  # a compiled step would compile again for eval mode
                    row["eval"] = evaluate(model, eval_loader, accel, "bf16" if precision == "bf16" else "fp32",
                                           num_classes)
                model.train()
            runlog.add_epoch(row)
            state.history = runlog.history
            state.epoch, state.step_in_epoch = epoch + 1, 0
            state.wall_time_s = time.perf_counter() - run_start
            save_checkpoint()
            bars.remove_task(task)
            if main:
                log(epoch_line(row, recipe.epochs))
    runlog.close()

    # ---- the final model: weights + timm config, summary
    summary = {"recipe": recipe.name, "dataset": recipe.dataset, "epochs": recipe.epochs,
               "wall_time_s": state.wall_time_s, "params": params, "gmacs": gmacs,
               "train_img_per_s": _median([r["img_per_s"] for r in state.history]),
               "distillation_type": recipe.distillation_type, "teacher": recipe.teacher,
               "eval": next((r["eval"] for r in reversed(state.history) if r.get("eval")), None)}
    if main:
        from deitctl.modelref import EMA_WEIGHTS, save_model_dir

        final = accel.unwrap_model(model)
        size = (recipe.in_chans, recipe.img_size, recipe.img_size)
        save_model_dir(final, run_dir, train_split.class_names, recipe.mean, recipe.std, recipe.eval_crop_pct,
                       input_size=size)
        if ema is not None:
            save_model_dir(ema.module, run_dir, train_split.class_names, recipe.mean, recipe.std,
                           recipe.eval_crop_pct, weights_name=EMA_WEIGHTS, input_size=size)
        write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    accel.wait_for_everyone()
    accel.end_training()
    return summary


def _warm_up_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, example: torch.Tensor, accel: Any) -> None:
    """One forward+backward on zeros, so the compiled student compiles before the first timed step;
    the run's random state and gradients are left as if it never happened."""
    from deitctl.speed import preserved_rng

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


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    ev = row.get("eval") or {}
    heads = "".join(f"  {k} {ev[k]:.2f}" for k in ("top1_cls", "top1_dist") if k in ev)
    acc = f"  eval top-1 {ev['top1']:.2f}  top-5 {ev['top5']:.2f}  loss {ev['loss']:.4f}{heads}" if ev else ""
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  "
            f"{row['img_per_s']:.1f} img/s  {row['epoch_time_s']:.1f}s{acc}")


def _median(values: list[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None

