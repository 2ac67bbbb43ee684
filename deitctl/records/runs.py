"""A finished run as the report reads it: recipe, summary, metrics, its evaluation and per-image predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deitctl.core.errors import UsageError
from deitctl.records.rundir import EVAL, METRICS, RECIPE, SUMMARY, RunDir

REQUIRED_FILES = (RECIPE, SUMMARY, METRICS)
ACCURACY_KEYS = ("top1", "top5", "top1_cls", "top1_dist")


@dataclass
class Run:
    """Everything the report needs from one run directory, already parsed."""

    path: Path
    recipe: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    eval: dict[str, Any] = field(default_factory=dict)
    eval_source: str = SUMMARY
    scale: float = 1.0  # multiply stored accuracies by this to get percent
    predictions: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def distillation(self) -> str:
        return str(self.recipe.get("distillation_type") or "none")

    @property
    def has_dist_token(self) -> bool:
        return "top1_cls" in self.eval or "_distilled_" in str(self.recipe.get("model", ""))

    def pct(self, value: Any) -> float | None:
        return None if value is None else float(value) * self.scale


def _accuracy_scale(run: Run) -> float:
    """100 when the run stores fractions, 1 when it already stores percentages."""
    evals = [run.eval, run.summary.get("eval") or {}, *(m.get("eval") or {} for m in run.metrics)]
    values = [float(e[k]) for e in evals for k in ACCURACY_KEYS if isinstance(e.get(k), (int, float))]
    return 1.0 if values and max(values) > 1.0 else 100.0


def load_run(path: Path) -> Run:
    """Parse a run directory, or fail with one line that names the directory and what is missing."""
    if not path.is_dir():
        raise UsageError(f"run directory {path} does not exist")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        hint = " (has training finished?)" if SUMMARY in missing else ""
        raise UsageError(f"run directory {path} is missing {', '.join(missing)}{hint}")
    record = RunDir(path)
    run = Run(path=path, recipe=record.recipe_data(), summary=record.summary() or {}, metrics=record.metrics(),
              predictions=record.predictions())
    evaluated = record.eval_result()
    if evaluated is not None:  # a later `deitctl eval` beats the end-of-training eval
        run.eval, run.eval_source = evaluated, EVAL
    else:
        run.eval = dict(run.summary.get("eval") or {})
    run.scale = _accuracy_scale(run)
    return run
