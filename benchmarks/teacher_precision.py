"""How often a bf16 teacher's hard label differs from the fp32 teacher's, over one augmented epoch.

Hard distillation trains the distillation head on the teacher's argmax, so a label that flips with the
number format changes the student's target. A bf16 teacher is cast whole; this measures,
on the images the student actually sees (the recipe's augmentation, Mixup/CutMix included), how many hard
labels that changes against fp32, and the same for autocast (weights and batch norm kept in fp32).

    python benchmarks/teacher_precision.py runs/main/fashion-teacher --recipe fashion-deit-ti-distilled \
        --samples 20000
"""

from __future__ import annotations

import argparse
import copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="teacher run or model directory")
    p.add_argument("--recipe", default="fashion-deit-ti-distilled", help="the student recipe whose augmentation is used")
    p.add_argument("--samples", type=int, default=20000, help="training images (a seeded subset, as main.sh)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from machine import header
    from torch.utils.data import DataLoader

    from deitctl.config.loader import load_recipe
    from deitctl.data.samples import collate, with_transform
    from deitctl.data.splits import load_split, subset
    from deitctl.data.transforms import make_mixup, train_transform
    from deitctl.training.teacher import load_teacher

    torch.manual_seed(args.seed)
    recipe = load_recipe(args.recipe)
    split = subset(load_split(recipe.dataset, recipe.train_split), args.samples, args.seed)
    data = with_transform(split, train_transform(recipe), recipe.in_chans)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=1,
                        collate_fn=collate, generator=torch.Generator().manual_seed(args.seed))
    mixup = make_mixup(recipe, len(split.class_names))
    device = torch.device("cpu")

    def teacher(precision: str):
        t = load_teacher(args.teacher, len(split.class_names), recipe.in_chans, recipe.mean, recipe.std)
        return t.prepare(device, precision, compile_model=False)

    fp32, bf16 = teacher("fp32"), teacher("bf16")
    auto = copy.deepcopy(fp32)  # fp32 weights and batch norm; matmuls/convs in bf16 under autocast
    seen = flips_cast = flips_auto = 0
    for batch in loader:
        x, y = batch
        if mixup is not None:
            x, _ = mixup(x, y)
        ref = fp32(x).argmax(1)
        flips_cast += int((bf16(x).argmax(1) != ref).sum())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            flips_auto += int((auto(x).argmax(1) != ref).sum())
        seen += len(ref)
    print(header())
    print(f"teacher {args.teacher}; augmentation of recipe {recipe.name} (mixup {recipe.mixup}, cutmix "
          f"{recipe.cutmix}); {seen} augmented training images")
    print("| teacher precision | hard labels that differ from fp32 |")
    print("|---|---|")
    print(f"| bf16, cast whole | {flips_cast} ({100 * flips_cast / seen:.3f} %) |")
    print(f"| bf16 autocast, batch norm fp32 | {flips_auto} ({100 * flips_auto / seen:.3f} %) |")


if __name__ == "__main__":
    main()
