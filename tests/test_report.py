"""`deitctl report`: the Table 3-shaped table, the plot, and one-line errors for bad run directories.

The report only reads files, so the run directories here are fabricated in the layout the
training loop writes (recipe.yaml, metrics.jsonl, summary.json, optional eval.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    distillation: str = "none",
    top1: float = 0.80,
    heads: tuple[float, float] | None = None,
    teacher: str | None = None,
    model: str = "deit_tiny_patch16_224",
    epochs: int = 3,
) -> Path:
    """A finished run directory; accuracies stored as fractions unless the caller passes percents."""
    run = root / name
    run.mkdir(parents=True)
    recipe = {"name": name, "model": model, "dataset": "fashion-mnist", "epochs": epochs, "batch_size": 256,
              "lr": 1e-3, "distillation_type": distillation, "teacher": teacher,
              "distillation_alpha": 0.5, "distillation_tau": 1.0}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    final = {"top1": top1, "top5": min(1.0, top1 + 0.15) if top1 <= 1 else 99.0, "loss": 0.5, "num_samples": 10000}
    if heads:
        final |= {"top1_cls": heads[0], "top1_dist": heads[1]}
    lines = []
    for epoch in range(epochs):
        record = {"epoch": epoch, "step": (epoch + 1) * 10, "train_loss": 2.0 - 0.5 * epoch, "lr": 1e-3,
                  "img_per_s": 500.0, "epoch_time_s": 12.0}
        if epoch != 1:  # "eval" may be missing on some epochs
            record["eval"] = {**final, "top1": final["top1"] * (epoch + 1) / epochs, "loss": 1.5 - 0.3 * epoch}
        lines.append(json.dumps(record))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"recipe": name, "dataset": "fashion-mnist", "epochs": epochs, "wall_time_s": 754.0,
               "params": 5_526_346, "gmacs": 1.258, "train_img_per_s": 512.3, "eval": final}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    root = tmp_path / "runs"
    return [
        make_run(root, "fashion-teacher", model="resnet18", top1=0.93),
        make_run(root, "student-none", top1=0.85),
        make_run(root, "student-soft", "soft", top1=0.86, heads=(0.855, 0.858), teacher="runs/fashion-teacher"),
        make_run(root, "student-hard", "hard", top1=0.88, heads=(0.872, 0.879), teacher="runs/fashion-teacher"),
    ]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Markdown table → {run name: cells}."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("run", ":---"):
            rows[cells[0]] = cells
    return rows


def test_table3_shape_and_numbers(cli, runs, tmp_path):
    out = tmp_path / "out" / "report.md"
    code, stdout, _ = cli("report", *runs, "--out", out)
    assert code == 0, stdout
    rows = table_rows(stdout)
    assert list(rows) == ["fashion-teacher", "student-none", "student-soft", "student-hard"]
    #            run, method, fused, cls, dist, teacher, params, GMACs, img/s, wall
    assert rows["fashion-teacher"][1:6] == ["teacher", "93.00", "—", "—", "—"]
    assert rows["student-none"][1:6] == ["no distillation", "85.00", "—", "—", "—"]
    assert rows["student-soft"][1:6] == ["soft distillation", "86.00", "85.50", "85.80", "93.00"]
    assert rows["student-hard"][1:6] == ["hard distillation", "88.00", "87.20", "87.90", "93.00"]
    assert rows["student-hard"][6:] == ["5.53", "1.26", "512", "12.6 min"]

    text = out.read_text()
    assert "| student-hard | hard distillation | 88.00 |" in text
    assert "![accuracy and loss curves](report_curves.png)" in text
    png = out.with_name("report_curves.png")
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5000
    assert not list(out.parent.glob(".*tmp"))  # atomic writes leave nothing behind


def test_json_rows_and_eval_json_preferred(cli, runs, tmp_path):
    (runs[3] / "eval.json").write_text(json.dumps(
        {"top1": 0.9, "top5": 0.99, "loss": 0.3, "num_samples": 10000, "top1_cls": 0.89, "top1_dist": 0.895,
         "dataset": "fashion-mnist", "split": "test"}))
    code, stdout, _ = cli("report", *runs, "--out", tmp_path / "r.md", "--json")
    assert code == 0
    rows = {r["run"]: r for r in json.loads(stdout)}
    hard = rows["student-hard"]
    assert (hard["top1"], hard["top1_cls"], hard["eval_source"]) == (pytest.approx(90.0), pytest.approx(89.0), "eval.json")
    assert rows["student-soft"]["eval_source"] == "summary.json"
    assert rows["student-none"]["top1_dist"] is None and rows["student-none"]["teacher_top1"] is None
    assert rows["student-soft"]["params_m"] == pytest.approx(5.526346)


def test_percent_scale_detected(cli, tmp_path):
    run = make_run(tmp_path, "pct-run", top1=91.25)  # a run that stores percentages
    code, stdout, _ = cli("report", run, "--out", tmp_path / "r.md", "--json")
    assert code == 0
    assert json.loads(stdout)[0]["top1"] == pytest.approx(91.25)


def test_unknown_teacher_and_dataset_title(cli, tmp_path):
    run = make_run(tmp_path, "b-dist", "hard", heads=(0.8, 0.8), teacher="regnety_160.deit_in1k")
    code, stdout, _ = cli("report", run, "--out", tmp_path / "r.md", "--dataset", "my-data")
    assert code == 0
    assert table_rows(stdout)["b-dist"][5] == "—"  # teacher not among the runs
    assert (tmp_path / "r.md").read_text().startswith("# DeiT report — my-data")


def test_truncated_last_metrics_line_is_tolerated(cli, runs, tmp_path):
    with (runs[1] / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "train_lo')
    code, _, _ = cli("report", runs[1], "--out", tmp_path / "r.md")
    assert code == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "summary.json").unlink(), "is missing summary.json (has training finished?)"),
        (lambda run: (run / "recipe.yaml").unlink(), "is missing recipe.yaml"),
        (lambda run: (run / "summary.json").write_text("{oops"), "summary.json: malformed JSON"),
        (lambda run: (run / "metrics.jsonl").write_text('{"a"\n{"epoch": 1}\n'), "metrics.jsonl:1: malformed JSON"),
    ],
)
def test_bad_run_dirs_are_usage_errors(cli, runs, tmp_path, damage, message):
    damage(runs[0])
    code, _, err = cli("report", *runs, "--out", tmp_path / "r.md")
    assert code == 2
    assert message in err and "fashion-teacher" in err
    assert "\n" not in err.strip()
    assert not (tmp_path / "r.md").exists()


def test_missing_dir_and_bad_out(cli, runs, tmp_path):
    code, _, err = cli("report", tmp_path / "nope", "--out", tmp_path / "r.md")
    assert (code, "does not exist" in err) == (2, True)
    code, _, err = cli("report", *runs, "--out", tmp_path / "r.txt")
    assert (code, "expected a .md file" in err) == (2, True)


def test_rows_follow_table3_order(cli, runs, tmp_path):
    code, stdout, _ = cli("report", *reversed(runs), "--out", tmp_path / "r.md")
    assert code == 0
    assert list(table_rows(stdout)) == ["fashion-teacher", "student-none", "student-soft", "student-hard"]
