"""``deitctl report``: compare finished runs in the shape of the paper's Table 3, plus curves.

The report is a pure reader of run directories (``recipe.yaml``, ``summary.json``,
``metrics.jsonl``, optionally ``eval.json``); it never loads a model, so it is cheap enough to run
after every experiment. Accuracies are shown in percent like the paper. A run may store them as
fractions (0.912) or percentages (91.2); the scale is detected per run from its largest accuracy,
because top-5 on any real run is far above 1 % and so tells the two apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deitctl.core.atomic import write_text
from deitctl.core.errors import UsageError
from deitctl.records.plots import plot_curves
from deitctl.records.rundir import EVAL, METRICS, RECIPE, SUMMARY, RunDir

REQUIRED_FILES = (RECIPE, SUMMARY, METRICS)
ACCURACY_KEYS = ("top1", "top5", "top1_cls", "top1_dist")
METHODS = {"none": "no distillation", "soft": "soft distillation", "hard": "hard distillation"}
ROW_ORDER = ("teacher", *METHODS.values())  # the paper's Table 3 order, teacher first for reference
DISTILLATION_KEYS = ("teacher", "distillation_alpha", "distillation_tau")
DASH = "—"

# (row key, column header, formatter name) — one place decides what the table shows.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", "text"),
    ("method", "method", "text"),
    ("top1", "top-1 (fused)", "pct"),
    ("top1_cls", "top-1 class head", "pct"),
    ("top1_dist", "top-1 dist. head", "pct"),
    ("teacher_top1", "teacher top-1", "pct"),
    ("params_m", "params (M)", "params"),
    ("gmacs", "GMACs", "gmacs"),
    ("train_img_per_s", "train img/s", "rate"),
    ("wall_time_s", "wall time", "duration"),
)


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

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def distillation(self) -> str:
        return str(self.recipe.get("distillation_type") or "none")

    def pct(self, value: Any) -> float | None:
        return None if value is None else float(value) * self.scale


@dataclass
class Report:
    """What ``build_report`` produced: JSON-ready rows, the markdown table and the files written."""

    rows: list[dict[str, Any]]
    table: str
    files: list[Path]


# ----------------------------------------------------------------------------------------- reading
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
        hint = " (has training finished?)" if "summary.json" in missing else ""
        raise UsageError(f"run directory {path} is missing {', '.join(missing)}{hint}")
    record = RunDir(path)
    run = Run(path=path, recipe=record.recipe_data(), summary=record.summary() or {}, metrics=record.metrics())
    evaluated = record.eval_result()
    if evaluated is not None:  # a later `deitctl eval` beats the end-of-training eval
        run.eval, run.eval_source = evaluated, EVAL
    else:
        run.eval = dict(run.summary.get("eval") or {})
    run.scale = _accuracy_scale(run)
    return run


# ------------------------------------------------------------------------------------------- rows
def _same_run(reference: str, run: Run) -> bool:
    """Does a recipe's ``teacher`` reference point at this run directory?"""
    ref = Path(reference)
    return ref.name == run.name or (ref.exists() and ref.resolve() == run.path.resolve())


def find_teacher(student: Run, runs: Sequence[Run]) -> Run | None:
    ref = student.recipe.get("teacher")
    if not ref or student.distillation == "none":
        return None
    return next((r for r in runs if r is not student and _same_run(str(ref), r)), None)


def _is_teacher(run: Run, runs: Sequence[Run]) -> bool:
    """A run is a teacher if a student in this report names it, or (alone) if its recipe says so."""
    return any(find_teacher(s, runs) is run for s in runs) or "teacher" in str(run.recipe.get("name", run.name))


def build_row(run: Run, runs: Sequence[Run]) -> dict[str, Any]:
    """One table row; accuracies in percent, ``None`` where a value does not apply or is unknown."""
    teacher = find_teacher(run, runs)
    distilled = run.distillation != "none"
    params = run.summary.get("params")
    return {
        "run": run.name,
        "path": str(run.path),
        "method": "teacher" if _is_teacher(run, runs) else METHODS.get(run.distillation, run.distillation),
        "distillation_type": run.distillation,
        "model": run.recipe.get("model"),
        "dataset": run.eval.get("dataset") or run.summary.get("dataset") or run.recipe.get("dataset"),
        "epochs": run.summary.get("epochs"),
        "top1": run.pct(run.eval.get("top1")),
        "top5": run.pct(run.eval.get("top5")),
        "top1_cls": run.pct(run.eval.get("top1_cls")) if distilled else None,
        "top1_dist": run.pct(run.eval.get("top1_dist")) if distilled else None,
        "eval_loss": run.eval.get("loss"),
        "eval_samples": run.eval.get("num_samples"),
        "eval_source": run.eval_source,
        "teacher": run.recipe.get("teacher") if distilled else None,
        "teacher_top1": teacher.pct(teacher.eval.get("top1")) if teacher else None,
        "params_m": params / 1e6 if isinstance(params, (int, float)) else None,
        "gmacs": run.summary.get("gmacs"),
        "train_img_per_s": run.summary.get("train_img_per_s"),
        "wall_time_s": run.summary.get("wall_time_s"),
    }


def _order_key(method: str) -> int:
    return ROW_ORDER.index(method) if method in ROW_ORDER else len(ROW_ORDER)


# ------------------------------------------------------------------------------------- formatting
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_FORMATS = {
    "text": str,
    "pct": lambda v: f"{v:.2f}",
    "params": lambda v: f"{v:.2f}",
    "gmacs": lambda v: f"{v:.3g}",
    "rate": lambda v: f"{v:,.0f}",
    "duration": _duration,
}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned, "—" for not applicable."""
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    align = "|" + "|".join(":---" if kind == "text" else "---:" for _, _, kind in COLUMNS) + "|"
    body = [
        "| " + " | ".join(DASH if r.get(key) is None else _FORMATS[kind](r[key]) for key, _, kind in COLUMNS) + " |"
        for r in rows
    ]
    return "\n".join([header, align, *body]) + "\n"


def _recipe_table(runs: Sequence[Run]) -> str:
    """The hyper-parameters that make runs comparable (or not): same budget, same data."""
    keys = ("model", "dataset", "epochs", "batch_size", "lr", "distillation_type", *DISTILLATION_KEYS)
    lines = ["| run | " + " | ".join(keys) + " |", "|:---" * (len(keys) + 1) + "|"]
    for run in runs:
        applies = {k: run.distillation != "none" or k not in DISTILLATION_KEYS for k in keys}
        cells = [str(run.recipe[k]) if applies[k] and run.recipe.get(k) is not None else DASH for k in keys]
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(runs: Sequence[Run], rows: Sequence[dict[str, Any]], dataset: str | None, plot: str) -> str:
    datasets = sorted({str(r["dataset"]) for r in rows if r.get("dataset")})
    title = dataset or ", ".join(datasets) or "unknown dataset"
    parts = [f"# DeiT report — {title}\n", markdown_table(rows)]
    parts.append(
        "Top-1 in percent on the evaluation split. *Fused*: the mean of the class-head and "
        "distillation-head logits (late fusion, as in the authors' code). "
        f"{DASH}: not a distilled model, or not known.\n"
    )
    if len(datasets) > 1:
        parts.append(f"**Warning:** the runs were evaluated on different datasets ({', '.join(datasets)}).\n")
    parts += ["## Recipes\n", _recipe_table(runs), "## Curves\n", f"![accuracy and loss curves]({plot})\n"]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------- entry
def build_report(run_dirs: Sequence[os.PathLike | str], out: Path, dataset: str | None = None) -> Report:
    """Read the runs, write ``out`` (markdown) and ``<out stem>_curves.png`` beside it."""
    if not run_dirs:
        raise UsageError("give at least one run directory")
    runs = [load_run(Path(d)) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise UsageError(f"run directory names must differ to label the rows: {', '.join(names)}")
    if out.suffix.lower() != ".md":
        raise UsageError(f"--out {out}: expected a .md file")
    rows = [build_row(r, runs) for r in runs]
    order = sorted(range(len(runs)), key=lambda i: _order_key(rows[i]["method"]))
    runs, rows = [runs[i] for i in order], [rows[i] for i in order]
    plot = out.with_name(f"{out.stem}_curves.png")
    plot_curves({r.name: r.metrics for r in runs}, plot, scales={r.name: r.scale for r in runs})
    write_text(out, render_markdown(runs, rows, dataset, plot.name))
    return Report(rows=rows, table=markdown_table(rows), files=[out, plot])
