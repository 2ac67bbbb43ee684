"""The training loop: train, distill through attention, fine-tune — one accelerate loop for all.

Read top to bottom: ``setup`` builds every part from the plan (``deitctl.training.parts``), then
epochs → optimizer steps, evaluating and checkpointing as the recipe says, then the final model.
``on_step`` sees every micro-batch's loss before its backward pass (fault injection, instrumentation).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from deitctl.core.console import log, progress
from deitctl.core.errors import DeitctlError
from deitctl.data.transforms import SMALL
from deitctl.training.parts import Parts, TrainState, setup
from deitctl.training.plan import Plan
from deitctl.training.schedule import lr_at

StepHook = Callable[[TrainState, torch.Tensor], torch.Tensor]


def train(plan: Plan, on_step: StepHook | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final summary (also written to summary.json)."""
    from deitctl.evaluation.metrics import evaluate
    from deitctl.records.runlog import RunLog
    from deitctl.runtime.compile import eager

    parts = setup(plan)
    recipe, accel, state, main = parts.recipe, parts.accel, parts.state, parts.accel.is_main_process
    runlog = RunLog(plan.run, main, state.history)
    if main:
        announce(parts)
    run_start = time.perf_counter() - state.wall_time_s
    with progress() as bars:
        for epoch in range(state.epoch, recipe.epochs):
            parts.epoch_sampler.set_epoch(epoch, skip=state.step_in_epoch * parts.accum * parts.micro)
            task = bars.add_task(f"epoch {epoch + 1}/{recipe.epochs}", info="",
                                 total=parts.steps_per_epoch * recipe.batch_size,
                                 completed=state.step_in_epoch * recipe.batch_size)

            def advance(rate: float, loss: float, lr: float, task: Any = task) -> None:
                bars.update(task, advance=recipe.batch_size, rate=rate, info=f"loss {loss:.4f}  lr {lr:.2e}")
                if recipe.checkpoint_every and state.global_step % recipe.checkpoint_every == 0 \
                        and state.step_in_epoch < parts.steps_per_epoch:
                    state.wall_time_s = time.perf_counter() - run_start
                    save_checkpoint(parts)

            row = train_epoch(parts, epoch, advance, on_step)
            if epoch + 1 == recipe.epochs or (recipe.eval_every and (epoch + 1) % recipe.eval_every == 0):
                with eager(accel.unwrap_model(parts.model)):  # a compiled step would compile again for eval mode
                    row["eval"] = evaluate(parts.model, parts.eval_loader, accel,
                                           "bf16" if parts.precision == "bf16" else "fp32", len(parts.class_names),
                                           fuse=recipe.is_distilled or recipe.label_both_heads)  # not an untaught head
            runlog.add_epoch(row)
            state.history = runlog.history
            state.epoch, state.step_in_epoch = epoch + 1, 0
            state.wall_time_s = time.perf_counter() - run_start
            save_checkpoint(parts)
            bars.remove_task(task)
            if main:
                log(epoch_line(row, recipe.epochs))
    runlog.close()
    return finish(parts)


def train_epoch(parts: Parts, epoch: int, advance: Callable[[float, float, float], None],
                on_step: StepHook | None) -> dict[str, Any]:
    """One epoch (or what is left of it after a resume); returns its metrics row."""
    from deitctl.data.loaders import WaitTimer
    from deitctl.runtime.rng import set_rng_state

    accel, model, state, world = parts.accel, parts.model, parts.state, parts.accel.num_processes
    model.train()
    loss_sum, loss_count, seen, t0 = torch.zeros((), device=accel.device), 0, 0, time.perf_counter()
    step_sum = torch.zeros((), device=accel.device)  # this optimizer step's micro-batch losses
    if state.step_in_epoch == 0:
        state.step_losses = []
    batches = WaitTimer(iter(parts.train_loader))  # workers start here; restore the RNG after, as the original run had it
    if parts.rng is not None:
        set_rng_state(parts.rng)
        parts.rng = None
    rank = accel.process_index  # micro_step counts from the epoch's start, a resumed one's too: it seeds the mixing
    for micro_step, (images, targets) in enumerate(batches, state.step_in_epoch * parts.accum):
        if state.step_in_epoch >= parts.steps_per_epoch:
            break
        images, targets = images.to(accel.device, non_blocking=True), targets.to(accel.device)
        if parts.mixup is not None:
            images, targets = parts.mixup(images, targets, (epoch, micro_step, rank))
        sync = (micro_step + 1) % parts.accum == 0
        teacher_logits = parts.teach(images, epoch, micro_step) if parts.teach is not None else None  # stored or not
        with contextlib.nullcontext() if sync else accel.no_sync(model):
            with accel.autocast():
                loss = parts.loss(model(images), targets, teacher_logits)
            if on_step is not None:
                loss = on_step(state, loss)
            accel.backward(loss / parts.accum)
        step_sum += loss.detach().float()
        loss_count += 1
        seen += images.shape[0]
        if sync:
            loss_sum += step_sum
            lr = optimizer_step(parts, epoch, loss_sum)
            state.step_losses.append([state.global_step, round(step_sum.item() / parts.accum, 5)])
            step_sum.zero_()
            advance(seen * world / (time.perf_counter() - t0), loss_sum.item() / loss_count, lr)
    epoch_time = time.perf_counter() - t0
    return {"epoch": epoch + 1, "step": state.global_step, "train_loss": accel.reduce(loss_sum / max(1, loss_count),
            "mean").item(), "lr": parts.optimizer.param_groups[0]["lr"], "img_per_s": seen * world / epoch_time,
            "epoch_time_s": epoch_time, "data_wait_s": batches.waited_s, "step_losses": list(state.step_losses)}


def optimizer_step(parts: Parts, epoch: int, loss_sum: torch.Tensor) -> float:
    """Refuse a non-finite loss (on any process), then clip, set the lr, step; returns the lr used."""
    accel, state, recipe = parts.accel, parts.state, parts.recipe
    if bool(accel.reduce((~torch.isfinite(loss_sum)).float(), "max")):  # any process
        run = parts.plan.run.path
        raise DeitctlError(
            f"non-finite loss at epoch {epoch + 1} step {state.step_in_epoch + 1}; stopped. The last good "
            f"checkpoint is kept in {run / 'checkpoints'}: lower the lr (--set lr=…) or clip gradients "
            f"(--set clip_grad=1.0), then `deitctl train {recipe.name} --resume {run}`")
    if recipe.clip_grad:
        accel.clip_grad_norm_(parts.model.parameters(), recipe.clip_grad)
    lr = lr_at(state.global_step, parts.total_steps, parts.warmup_steps, recipe, recipe.effective_lr)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)
    state.global_step += 1
    state.step_in_epoch += 1
    if parts.ema is not None:
        parts.ema.update(accel.unwrap_model(parts.model), step=state.global_step)
    return lr


def save_checkpoint(parts: Parts) -> None:
    from deitctl.training import checkpoint

    payload = {"optimizer": parts.optimizer.state_dict(), "trainer": asdict(parts.state)}
    if parts.ema is not None:
        payload["ema"] = parts.ema.state_dict()
    accel = parts.accel
    position = parts.epoch_sampler.state_dict() if parts.recipe.streaming else None
    checkpoint.save(parts.plan.run, parts.state.global_step, accel.unwrap_model(parts.model).state_dict(), payload,
                    accel.process_index, parts.checkpoint_writer, accel.wait_for_everyone, position)


def finish(parts: Parts) -> dict[str, Any]:
    """Write the final model (weights + timm config, EMA too) and summary.json; end the accelerate run."""
    import statistics

    from deitctl.data.transforms import recipe_data_config
    from deitctl.models.store import save_model_dir
    from deitctl.models.types import EMA_WEIGHTS

    recipe, state, accel, run = parts.recipe, parts.state, parts.accel, parts.plan.run
    rates = [r["img_per_s"] for r in state.history]
    summary = {"recipe": recipe.name, "dataset": recipe.dataset, "epochs": recipe.epochs,
               "wall_time_s": state.wall_time_s, "params": parts.params, "gmacs": parts.gmacs,
               "train_img_per_s": statistics.median(rates) if rates else None,
               "train_images": state.global_step * recipe.batch_size, "optimizer_steps": state.global_step,
               "distillation_type": recipe.distillation_type, "teacher": recipe.teacher,
               "teacher_outputs": _teacher_outputs(parts),
               "eval": next((r["eval"] for r in reversed(state.history) if r.get("eval")), None)}
    if accel.is_main_process:
        config = recipe_data_config(recipe)
        save_model_dir(accel.unwrap_model(parts.model), run.path, parts.class_names, config)
        if parts.ema is not None:
            save_model_dir(parts.ema.module, run.path, parts.class_names, config, weights_name=EMA_WEIGHTS)
        run.write_summary(summary)
    accel.wait_for_everyone()
    accel.end_training()
    return summary


def _teacher_outputs(parts: Parts) -> dict[str, Any] | None:
    """How the teacher's outputs came, over all processes: computed (teacher forwards) or read from the store."""
    if parts.teach is None:
        return None
    counts = torch.tensor([parts.teach.computed, parts.teach.read], device=parts.accel.device)
    computed, read = (int(n) for n in parts.accel.reduce(counts, "sum").tolist())
    return {**parts.teach.summary(), "computed": computed, "read": read}


def announce(parts: Parts) -> None:
    """What is about to run: model, data, batch plan, precision, distillation and the speed levers chosen."""
    recipe, state, accel = parts.recipe, parts.state, parts.accel
    teacher = f" from {recipe.teacher}" if parts.teacher is not None else ""
    log(f"[bold]{recipe.name}[/] → {parts.plan.run.path}  |  {recipe.model} ({parts.params / 1e6:.2f} M params, "
        f"{parts.gmacs:.3f} GMACs)  |  data {recipe.dataset}: {parts.sizes[0]} train / {parts.sizes[1]} eval, "
        f"{len(parts.class_names)} classes")
    log(f"processes {accel.num_processes} × micro-batch {parts.micro} × accumulation {parts.accum} = global batch "
        f"{recipe.batch_size}  |  lr {recipe.lr:g} × {recipe.batch_size}/{recipe.lr_base_batch} = "
        f"{recipe.effective_lr:.3g}  |  precision {parts.precision}{f' (teacher {parts.teacher.precision})' if parts.teacher else ''}  |  distillation "
        f"{recipe.distillation_type}{teacher}")
    if parts.warmup_steps >= parts.total_steps:
        top = lr_at(parts.total_steps - 1, parts.total_steps, parts.warmup_steps, recipe, recipe.effective_lr)
        log(f"[yellow]note:[/] the lr warm-up ({recipe.warmup_epochs:g} epochs) lasts the whole run ({recipe.epochs} "
            f"epoch{'s' if recipe.epochs > 1 else ''}): the lr only rises, to {top:.3g} at the last step, never the "
            f"{recipe.effective_lr:.3g} above; shorten it with --set warmup_epochs=N")
    from deitctl.runtime.rules import describe

    on = lambda flag: "on" if flag else "off"  # noqa: E731
    compiled = f"{on(parts.teacher.compiled)} ({parts.teacher.precision})" if parts.teacher is not None else "—"
    log(f"speed on {describe(accel.device)}: attention {parts.attention}  |  compile teacher {compiled}, student "
        f"{on(parts.compile_student)} ({parts.total_steps} steps)  |  fused optimizer {on(recipe.fused_optimizer)}  |  "
        f"fast augment {on(recipe.fast_augment and recipe.img_size <= SMALL)}  |  decode once "
        f"{on(recipe.decode_once and recipe.repeated_aug > 1)}  |  data workers {_workers(parts)}"
        + (f"  |  teacher outputs {parts.teach.describe(recipe.epochs)}" if parts.teach is not None else "")
        + (f"  |  resuming at epoch {state.epoch + 1} step {state.step_in_epoch}" if parts.plan.resume_from else ""))


def _workers(parts: Parts) -> str:
    """The loader workers in use, and why when the recipe asked for more (the cores, or a stream's shards)."""
    from deitctl.data.loaders import loader_workers

    used, asked = parts.train_loader.num_workers, parts.recipe.num_workers
    if used == asked:
        return str(used)
    return f"{used} (recipe {asked}; {f'{used} cores' if used == loader_workers(asked) else 'one per shard'})"


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    ev = row.get("eval") or {}
    heads = "".join(f"  {k} {ev[k]:.2f}" for k in ("top1_cls", "top1_dist") if k in ev)
    acc = f"  eval top-1 {ev['top1']:.2f}  top-5 {ev['top5']:.2f}  loss {ev['loss']:.4f}{heads}" if ev else ""
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  "
            f"{row['img_per_s']:.1f} img/s  {row['epoch_time_s']:.1f}s{acc}")
