"""The markdown of ``deitctl report``: the paper's Table 3 beside ours, every run, Table 4, recipes, curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deitctl.records.stats import disagreement

if TYPE_CHECKING:
    from deitctl.records.runs import Run

DASH = "—"
LABELS = {"teacher": "teacher", "none": "no distillation", "soft-class": "usual distillation",
          "hard-class": "hard distillation", "soft-token": "DeiT⚗ soft", "hard-token": "DeiT⚗ hard"}
DISTILLATION_KEYS = ("teacher", "distillation_alpha", "distillation_tau")
# (paper's Table 3 row, DeiT-Ti on ImageNet, our arm, the row key holding our figure)
TABLE3 = (
    ("teacher (convnet; the paper's: RegNetY-16GF)", 82.9, "teacher", "top1"),
    ("no distillation", 72.2, "none", "top1"),
    ("usual distillation", 72.2, "soft-class", "top1"),
    ("hard distillation", 74.3, "hard-class", "top1"),
    ("DeiT⚗: class embedding", 73.9, "hard-token", "top1_cls"),
    ("DeiT⚗: distillation embedding", 74.6, "hard-token", "top1_dist"),
    ("DeiT⚗: class + distillation (late fusion)", 74.5, "hard-token", "top1"),
)
HEAD_OF = {"top1": "", "top1_cls": " (class head)", "top1_dist": " (distillation head)"}

# (row key, column header, formatter name) — one place decides what the runs table shows.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", "text"),
    ("label", "method", "text"),
    ("top1", "top-1 (fused)", "pct"),
    ("top1_cls", "top-1 class head", "pct"),
    ("top1_dist", "top-1 dist. head", "pct"),
    ("teacher_top1", "teacher top-1", "pct"),
    ("params_m", "params (M)", "params"),
    ("gmacs", "GMACs", "gmacs"),
    ("train_img_per_s", "train img/s", "rate"),
    ("wall_time_s", "wall time", "duration"),
)


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
    body = []
    for r in rows:
        r = {**r, "label": LABELS.get(r["method"], r["method"])}
        body.append("| " + " | ".join(DASH if r.get(key) is None else _FORMATS[kind](r[key])
                                      for key, _, kind in COLUMNS) + " |")
    return "\n".join([header, align, *body]) + "\n"


def recipe_table(runs: Sequence[Run]) -> str:
    """The hyper-parameters that make runs comparable (or not): same budget, same data."""
    keys = ("model", "dataset", "epochs", "batch_size", "lr", "distillation_type", *DISTILLATION_KEYS)
    lines = ["| run | " + " | ".join(keys) + " |", "|:---" * (len(keys) + 1) + "|"]
    for run in runs:
        applies = {k: run.distillation != "none" or k not in DISTILLATION_KEYS for k in keys}
        cells = [str(run.recipe[k]) if applies[k] and run.recipe.get(k) is not None else DASH for k in keys]
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table3(rows: Sequence[dict[str, Any]], pairs: Sequence[dict[str, Any]]) -> str:
    """The paper's Table 3 rows, its DeiT-Ti figures beside ours, each arm tested against ``none``."""
    p_values = {(p["a"], p["b"]): p["p_value"] for p in pairs} | {(p["b"], p["a"]): p["p_value"] for p in pairs}
    baselines = [r for r in rows if r["method"] == "none"]
    lines = ["| Table 3 row | paper (DeiT-Ti, ImageNet) | ours | Δ vs no distillation | McNemar p vs no "
             "distillation | run |", "|:---|---:|---:|---:|---:|:---|"]
    for title, paper, method, key in TABLE3:
        for row in (r for r in rows if r["method"] == method and r.get(key) is not None):
            base = baselines[0] if baselines and method not in ("none", "teacher") else None
            delta = f"{row[key] - base['top1']:+.2f}" if base and base.get("top1") is not None else DASH
            p = p_values.get((base["run"], row["run"] + HEAD_OF[key])) if base else None
            lines.append(f"| {title} | {paper:.1f} | {row[key]:.2f} | {delta} | {_p(p)} | {row['run']} |")
    return "\n".join(lines) + "\n"


def _p(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def disagreement_table(decisions: dict[str, Any], labels: Any) -> str:
    """The paper's Table 4: the fraction of test images on which two classifiers decide differently."""
    names = ["ground truth", *decisions]
    columns = {"ground truth": labels, **decisions}
    lines = ["| | " + " | ".join(names) + " |", "|:---" + "|---:" * len(names) + "|"]
    for a in names:
        cells = [f"{disagreement(columns[a], columns[b]):.3f}" for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(runs: Sequence[Run], rows: Sequence[dict[str, Any]], pairs: Sequence[dict[str, Any]],
                    decisions: dict[str, Any], labels: Any, dataset: str | None, plot: str) -> str:
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
    parts += ["## Table 3: distillation methods\n", table3(rows, pairs),
              "The paper's figures are DeiT-Ti trained for 300 epochs on ImageNet; ours are on this report's data. "
              "p: exact two-sided McNemar test on the per-image decisions over the same test images.\n"]
    if labels is None:
        parts.append("No paired statistics: no run has per-image predictions (`deitctl eval RUN --save`).\n")
    else:
        missing = [r.name for r in runs if r.predictions is None]
        parts += [f"## Table 4: disagreement ({len(labels)} test images)\n", disagreement_table(decisions, labels),
                  "Fraction of test images on which two classifiers decide differently; against the ground truth, "
                  "the error rate.\n"]
        if missing:
            parts.append(f"Without per-image predictions (run `deitctl eval RUN --save`): {', '.join(missing)}.\n")
    parts += ["## Recipes\n", recipe_table(runs), "## Curves\n", f"![accuracy and loss curves]({plot})\n"]
    return "\n".join(parts)
