"""The transfer experiment's table: each arm's top-1 per seed, and exact McNemar tests of the comparisons it is for.

Reads ``deitctl eval --save``'s per-image predictions of every arm in ``OUT/seed-N/`` (scripts/transfer.sh) and
prints markdown: accuracies per seed with their mean, then each comparison's gain and p-value per seed, and
pooled over the seeds (all seeds' test images as one paired sample: the seeds share the test images, so the
pooled p-value treats a repeated image as new — read it as a summary, the per-seed values as the tests).

    .venv/bin/python scripts/transfer_table.py runs/transfer
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ARMS = {"teacher": "teacher (convnet, fine-tuned)", "scratch": "DeiT⚗ from scratch, no teacher",
        "scratch-kd": "DeiT⚗ from scratch, distilled", "finetuned": "DeiT⚗ fine-tuned, no teacher",
        "finetuned-kd": "DeiT⚗ fine-tuned, distilled (the paper's way)"}
COMPARISONS = [("finetuned", "scratch", "pre-training (fine-tuned vs scratch, no teacher)"),
               ("finetuned-kd", "scratch-kd", "pre-training (fine-tuned vs scratch, distilled)"),
               ("scratch-kd", "scratch", "distillation from scratch"),
               ("finetuned-kd", "finetuned", "distillation while fine-tuning")]


def load(seed_dir: Path) -> dict[str, dict]:
    import numpy as np

    arms = {}
    for arm in ARMS:
        path = seed_dir / arm / "predictions.npz"
        if not path.exists():
            sys.exit(f"transfer_table.py: {path} is missing; run scripts/transfer.sh to the end")
        with np.load(path) as f:
            arms[arm] = {"pred": f["pred"], "labels": f["labels"]}
    return arms


def main() -> None:
    import numpy as np

    from deitctl.records.stats import discordant, mcnemar_exact

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the transfer experiment's directory (runs/transfer)")
    seeds = sorted(p.parse_args().out.glob("seed-*"), key=lambda d: int(d.name.split("-")[1]))
    runs = {d.name: load(d) for d in seeds}
    names = list(runs)
    acc = {s: {a: 100 * float((r["pred"] == r["labels"]).mean()) for a, r in arms.items()} for s, arms in runs.items()}
    print(f"| arm | {' | '.join(names)} | mean |\n|---|{'---:|' * (len(names) + 1)}")
    for arm, label in ARMS.items():
        values = [acc[s][arm] for s in names]
        print(f"| {label} | {' | '.join(f'{v:.2f}' for v in values)} | {np.mean(values):.2f} |")
    print(f"\n| comparison | {' | '.join(f'{s}: gain, p' for s in names)} | pooled: gain, p |\n"
          f"|---|{'---:|' * (len(names) + 1)}")
    for a, b, label in COMPARISONS:
        cells, pooled = [], [0, 0]
        for s in names:
            ra, rb = runs[s][a], runs[s][b]
            assert (ra["labels"] == rb["labels"]).all(), "arms scored on different test images"
            only_a, only_b = discordant(ra["pred"], rb["pred"], ra["labels"])
            pooled[0], pooled[1] = pooled[0] + only_a, pooled[1] + only_b
            cells.append(f"{acc[s][a] - acc[s][b]:+.2f}, {mcnemar_exact(only_a, only_b):.2g}")
        gain = np.mean([acc[s][a] - acc[s][b] for s in names])
        print(f"| {label} | {' | '.join(cells)} | {gain:+.2f}, {mcnemar_exact(*pooled):.2g} |")


if __name__ == "__main__":
    main()
