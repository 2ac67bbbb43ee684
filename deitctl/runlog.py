"""The run directory's record: metrics.jsonl, TensorBoard scalars and curves.png, rewritten each epoch.

Only the main process writes. Every file is replaced atomically, so a run killed at any moment
leaves the last complete record behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deitctl.atomic import atomic_path, write_text

METRICS = "metrics.jsonl"


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool, history: list[dict[str, Any]] | None = None) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self._tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        write_text(self.run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in self.history))
        step = row["step"]
        for key in ("train_loss", "lr", "img_per_s", "epoch_time_s"):
            self._tb.add_scalar(f"train/{key}", row[key], step)
        for key, value in (row.get("eval") or {}).items():
            if isinstance(value, (int, float)):
                self._tb.add_scalar(f"eval/{key}", value, step)
        self._tb.flush()
        plot_curves(self.history, self.run_dir / "curves.png", title=self.run_dir.name)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(history: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """Training loss and eval accuracy (each head) against epochs, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
    evals = [(r["epoch"], r["eval"]) for r in history if r.get("eval")]
    if evals:
        ax_loss.plot([e for e, _ in evals], [m["loss"] for _, m in evals], marker="o", label="eval loss")
        for key, label in (("top1", "top-1 (fused)"), ("top1_cls", "class head"), ("top1_dist", "distillation head")):
            points = [(e, m[key]) for e, m in evals if key in m]
            if points:
                ax_acc.plot(*zip(*points, strict=True), marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="eval accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
