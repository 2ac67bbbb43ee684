"""The record a run writes while it trains: metrics.jsonl, TensorBoard scalars and curves.png, each epoch.

Only the main process writes. Every file is replaced atomically, so a run killed at any moment
leaves the last complete record behind.
"""

from __future__ import annotations

from typing import Any

from deitctl.records.plots import plot_curves
from deitctl.records.rundir import CURVES, RunDir


class RunLog:
    def __init__(self, run: RunDir, enabled: bool, history: list[dict[str, Any]] | None = None) -> None:
        self.run, self.enabled = run, enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self._tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run / "tb"))

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        self.run.write_metrics(self.history)
        step = row["step"]
        for key in ("train_loss", "lr", "img_per_s", "epoch_time_s"):
            self._tb.add_scalar(f"train/{key}", row[key], step)
        for key, value in (row.get("eval") or {}).items():
            if isinstance(value, (int, float)):
                self._tb.add_scalar(f"eval/{key}", value, step)
        self._tb.flush()
        plot_curves({self.run.name: self.history}, self.run / CURVES, title=self.run.name)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
