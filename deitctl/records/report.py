"""``deitctl report``: finished runs compared as the paper compares them — Table 3, paired tests, Table 4.

The report is a pure reader of run directories (``recipe.yaml``, ``summary.json``, ``metrics.jsonl``,
``eval.json`` and ``predictions.npz`` from ``deitctl eval --save``); it never loads a model, so it is
cheap enough to run after every experiment. Each run is an arm of Table 3:

  teacher     the convnet the students learn from (a student in the report names it as its teacher)
  none        no distillation
  soft-class  usual (soft) distillation on the class token of a student without a distillation token
  hard-class  hard distillation on the class token of a student without a distillation token
  soft-token  soft distillation through the distillation token (DeiT⚗)
  hard-token  hard distillation through the distillation token (DeiT⚗): class head, distillation head, fused

With per-image predictions, every pair of classifiers (each run's decision, and each head of a DeiT⚗)
gets an exact McNemar p-value and its disagreement (``deitctl.records.stats``). Accuracies are shown
in percent; a run that stores fractions (0.912) is detected from its largest accuracy (top-5 of any
real run is far above 1 %).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deitctl.core.atomic import write_text
from deitctl.core.errors import UsageError
from deitctl.records.plots import plot_curves
from deitctl.records.rundir import distillation_head_learned
from deitctl.records.runs import Run, load_run
from deitctl.records.stats import disagreement, paired_p_value

METHODS = ("teacher", "none", "soft-class", "hard-class", "soft-token", "hard-token")  # Table 3's order
HEADS = (("pred_cls", "class head"), ("pred_dist", "distillation head"))


@dataclass
class Report:
    """What ``build_report`` produced: the JSON document, the markdown table and the files written."""

    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    document: dict[str, Any]
    table: str
    files: list[Path]


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


def method_of(run: Run, runs: Sequence[Run]) -> str:
    """The run's arm of Table 3 (see the module docstring)."""
    if any(find_teacher(s, runs) is run for s in runs) or "teacher" in str(run.recipe.get("name", run.name)):
        return "teacher"
    if run.distillation == "none":
        return "none"
    return f"{run.distillation}-{'token' if run.has_dist_token else 'class'}"


def build_row(run: Run, runs: Sequence[Run]) -> dict[str, Any]:
    """One row; accuracies in percent, ``None`` where a value does not apply or is unknown."""
    teacher = find_teacher(run, runs)
    heads = run.has_dist_token and distillation_head_learned(run.recipe)  # an untaught head is not reported
    params, last = run.summary.get("params"), (run.metrics[-1] if run.metrics else {})
    steps = run.summary.get("optimizer_steps", last.get("step"))
    batch = run.recipe.get("batch_size")
    return {
        "run": run.name, "path": str(run.path), "method": method_of(run, runs), "distillation_type": run.distillation,
        "model": run.recipe.get("model"),
        "dataset": run.eval.get("dataset") or run.summary.get("dataset") or run.recipe.get("dataset"),
        "epochs": run.summary.get("epochs"),
        "top1": run.pct(run.eval.get("top1")), "top5": run.pct(run.eval.get("top5")),
        "top1_cls": run.pct(run.eval.get("top1_cls")) if heads else None,
        "top1_dist": run.pct(run.eval.get("top1_dist")) if heads else None,
        "eval_loss": run.eval.get("loss"), "eval_samples": run.eval.get("num_samples"), "eval_source": run.eval_source,
        "teacher": run.recipe.get("teacher") if run.distillation != "none" else None,
        "teacher_top1": teacher.pct(teacher.eval.get("top1")) if teacher else None,
        "params_m": params / 1e6 if isinstance(params, (int, float)) else None,
        "gmacs": run.summary.get("gmacs"), "train_img_per_s": run.summary.get("train_img_per_s"),
        "train_images": run.summary.get("train_images", steps * batch if steps and batch else None),
        "optimizer_steps": steps, "wall_s": run.summary.get("wall_time_s"),
        "wall_time_s": run.summary.get("wall_time_s"),
    }


# ------------------------------------------------------------------------------------ paired tests
def classifiers(runs: Sequence[Run], rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """name → per-image decisions (each run; each head of a DeiT⚗ too) and the labels they share.

    Runs evaluated on other images than the first one with predictions are refused: paired statistics
    over different test sets would compare nothing.
    """
    import numpy as np

    found: dict[str, Any] = {}
    labels, first = None, None
    for run, row in zip(runs, rows, strict=True):
        p = run.predictions
        if p is None:
            continue
        if first is None:
            labels, first = p["labels"], run
        elif (p.get("dataset"), p.get("split")) != (first.predictions.get("dataset"), first.predictions.get("split")) \
                or not np.array_equal(p["labels"], labels):
            raise UsageError(
                f"runs {first.name} and {run.name} were evaluated on different test sets "
                f"({first.predictions.get('dataset')}/{first.predictions.get('split')}, {len(labels)} images vs "
                f"{p.get('dataset')}/{p.get('split')}, {len(p['labels'])}); no paired statistics — evaluate both "
                "on the same data with `deitctl eval RUN --save`")
        found[run.name] = p["pred"]
        if row["top1_cls"] is not None:
            found |= {f"{run.name} ({label})": p[key] for key, label in HEADS if key in p}
    return found, labels


def pairs(decisions: dict[str, Any], labels: Any) -> list[dict[str, Any]]:
    return [{"a": a, "b": b, "p_value": paired_p_value(decisions[a], decisions[b], labels),
             "disagreement": disagreement(decisions[a], decisions[b])}
            for a, b in itertools.combinations(decisions, 2)]


# ------------------------------------------------------------------------------------------- entry
def build_report(run_dirs: Sequence[os.PathLike | str], out: Path, dataset: str | None = None,
                 attention: Path | None = None) -> Report:
    """Read the runs; write ``out`` (markdown), ``<stem>.json`` and ``<stem>_curves.png`` beside it.

    ``attention``: a picture of the runs' attention (``deitctl.app.report``) the markdown shows too.
    """
    from deitctl.records.report_md import markdown_table, render_markdown

    if not run_dirs:
        raise UsageError("give at least one run directory")
    runs = [load_run(Path(d)) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise UsageError(f"run directory names must differ to label the rows: {', '.join(names)}")
    if out.suffix.lower() != ".md":
        raise UsageError(f"--out {out}: expected a .md file")
    rows = [build_row(r, runs) for r in runs]
    order = sorted(range(len(runs)), key=lambda i: METHODS.index(rows[i]["method"]))
    runs, rows = [runs[i] for i in order], [rows[i] for i in order]
    decisions, labels = classifiers(runs, rows)
    pair_rows = pairs(decisions, labels)
    walls = [r["wall_s"] for r in rows if isinstance(r["wall_s"], (int, float))]
    document = {"rows": rows, "pairs": pair_rows, "total_wall_s": sum(walls) if walls else None,
                "test_images": None if labels is None else len(labels)}
    plot, doc_path = out.with_name(f"{out.stem}_curves.png"), out.with_suffix(".json")
    plot_curves({r.name: r.metrics for r in runs}, plot, scales={r.name: r.scale for r in runs})
    write_text(doc_path, json.dumps(document, indent=2) + "\n")
    markdown = render_markdown(runs, rows, pair_rows, decisions, labels, dataset, plot.name)
    if attention is not None:
        markdown += (f"\n## Attention\n\nAttention rollout of each transformer's class (and distillation) token "
                     f"over the first test images: where it looks.\n\n![attention rollout]({attention.name})\n")
    write_text(out, markdown)
    files = [out, doc_path, plot, *([attention] if attention is not None else [])]
    return Report(rows, pair_rows, document, markdown_table(rows), files)
