"""The data a run trains and evaluates on: map-style (a sampler over an indexed dataset) or streamed.

Map-style: repeated augmentation's sampler deals a seeded permutation to the processes, and each sample's
augmentation is seeded by (seed, epoch, index). Streamed (``streaming: true``): every process and loader
worker reads its own shards (``deitctl.data.streaming``); repeated augmentation becomes consecutive copies
in the same batch, and an epoch is as many steps as the map-style one would take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deitctl.core.console import log
from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from deitctl.training.plan import Plan


def build_inputs(plan: Plan, accel: Accelerator, micro: int, accum: int) -> dict[str, Any]:
    """The training loader and its epoch control, the eval loader, Mixup/CutMix, class names and sizes."""
    from deitctl.data.transforms import make_mixup

    data = _streamed(plan, accel, micro) if plan.recipe.streaming else _map_style(plan, accel, micro)
    train_size = data.pop("train_size")
    steps_per_epoch = train_size // (micro * accum * (accel.num_processes if plan.recipe.streaming else 1))
    if steps_per_epoch == 0:
        raise UsageError(f"{train_size} training samples make no full batch of {plan.recipe.batch_size}; "
                         "lower --batch-size or use more data")
    return {**data, "steps_per_epoch": steps_per_epoch, "mixup": make_mixup(plan.recipe, len(data["class_names"]))}


def _map_style(plan: Plan, accel: Accelerator, micro: int) -> dict[str, Any]:
    from deitctl.data.loaders import build_eval_loader, build_train_loader, loader_workers
    from deitctl.data.sampler import RepeatAugSampler
    from deitctl.data.samples import collate, with_transform
    from deitctl.data.splits import load_split, subset
    from deitctl.data.transforms import recipe_data_config, train_transform

    recipe, opts = plan.recipe, plan.options
    workers = loader_workers(recipe.num_workers)
    train_split = subset(load_split(recipe.dataset, recipe.train_split, opts.image_column, opts.label_column),
                         opts.max_train_samples, recipe.seed)
    eval_split = subset(load_split(recipe.dataset, recipe.eval_split, opts.image_column, opts.label_column),
                        opts.max_eval_samples, recipe.seed)
    sampler = RepeatAugSampler(len(train_split), accel.num_processes, accel.process_index,
                               repeats=recipe.repeated_aug, seed=recipe.seed)
    train_ds = with_transform(train_split, train_transform(recipe), recipe.in_chans)
    train_loader, epoch_sampler = build_train_loader(train_ds, sampler, micro, workers, recipe.seed,
                                                     collate, accel.device.type == "cuda", recipe.decode_once)
    eval_loader = accel.prepare_data_loader(
        build_eval_loader(eval_split, recipe_data_config(recipe), max(micro, 64), workers),
        device_placement=True)
    # the sampler's epoch length: the data split over the processes (padded), in samples per process
    return {"train_loader": train_loader, "epoch_sampler": epoch_sampler, "eval_loader": eval_loader,
            "class_names": train_split.class_names, "sizes": (len(train_split), len(eval_split)),
            "train_size": len(sampler)}


def _streamed(plan: Plan, accel: Accelerator, micro: int) -> dict[str, Any]:
    import torch

    from deitctl.data.loaders import loader_workers
    from deitctl.data.splits import load_stream
    from deitctl.data.streaming import ShardStream, StreamLoader, layout
    from deitctl.data.transforms import recipe_eval_transform, train_transform

    recipe, opts = plan.recipe, plan.options
    world, rank = accel.num_processes, accel.process_index
    train = load_stream(recipe.dataset, recipe.train_split, opts.image_column, opts.label_column, recipe.num_classes)
    evals = load_stream(recipe.dataset, recipe.eval_split, opts.image_column, opts.label_column, train.num_classes)
    if opts.max_eval_samples:
        evals.dataset = evals.dataset.take(opts.max_eval_samples)  # the first N: a stream has no seeded subset
        evals.num_examples = min(opts.max_eval_samples, evals.num_examples or opts.max_eval_samples)

    def all_have(has: bool) -> bool:  # several processes: the epoch ends for all when one runs out
        flag = torch.tensor(0.0 if has else 1.0, device=accel.device)
        return accel.reduce(flag, "max").item() == 0

    workers, how = layout(train.num_shards, world, loader_workers(recipe.num_workers))
    stream = ShardStream(train, train_transform(recipe), recipe.in_chans, micro, seed=recipe.seed, rank=rank,
                         world=world, buffer=recipe.shuffle_buffer, repeats=recipe.repeated_aug,
                         decode_once=recipe.decode_once)
    loader = StreamLoader(stream, workers, accel.device.type == "cuda", all_have if world > 1 else None)
    eval_workers, _ = layout(evals.num_shards, world, loader_workers(recipe.num_workers))
    eval_stream = ShardStream(evals, recipe_eval_transform(recipe), recipe.in_chans, max(micro, 64), rank=rank,
                              world=world, shuffle=False, drop_last=False)
    if accel.is_main_process:
        log(f"streaming {recipe.dataset}: {how}; shuffled in blocks of {recipe.shuffle_buffer} rows per worker"
            + (f", each sample {recipe.repeated_aug}× in a row (repeated augmentation)" if recipe.repeated_aug > 1 else ""))
    return {"train_loader": loader, "epoch_sampler": loader, "eval_loader": StreamLoader(eval_stream, eval_workers),
            "class_names": train.class_names, "sizes": (train.num_examples, evals.num_examples or 0),
            "train_size": train.require_size()}
