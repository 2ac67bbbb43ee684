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
    assert rows["student-soft"][1:6] == ["DeiT⚗ soft", "86.00", "85.50", "85.80", "93.00"]
    assert rows["student-hard"][1:6] == ["DeiT⚗ hard", "88.00", "87.20", "87.90", "93.00"]
    assert rows["student-hard"][6:] == ["5.53", "1.26", "512", "12.6 min"]

    text = out.read_text()
    assert "| student-hard | DeiT⚗ hard | 88.00 |" in text
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
    rows = {r["run"]: r for r in json.loads(stdout)["rows"]}
    hard = rows["student-hard"]
    assert (hard["top1"], hard["top1_cls"], hard["eval_source"]) == (pytest.approx(90.0), pytest.approx(89.0), "eval.json")
    assert rows["student-soft"]["eval_source"] == "summary.json"
    assert rows["student-none"]["top1_dist"] is None and rows["student-none"]["teacher_top1"] is None
    assert rows["student-soft"]["params_m"] == pytest.approx(5.526346)


def test_percent_scale_detected(cli, tmp_path):
    run = make_run(tmp_path, "pct-run", top1=91.25)  # a run that stores percentages
    code, stdout, _ = cli("report", run, "--out", tmp_path / "r.md", "--json")
    assert code == 0
    assert json.loads(stdout)["rows"][0]["top1"] == pytest.approx(91.25)


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


# --------------------------------------------------------------------- Table 3 arms, paired tests
def save_predictions(run: Path, pred, labels, heads=None, dataset: str = "fashion-mnist") -> None:
    import numpy as np

    arrays = {"labels": np.asarray(labels), "pred": np.asarray(pred)}
    if heads:
        arrays |= {"pred_cls": np.asarray(heads[0]), "pred_dist": np.asarray(heads[1])}
    np.savez(run / "predictions.npz", dataset=np.str_(dataset), split=np.str_("test"), **arrays)


def test_mcnemar_against_hand_computed_tables():
    from deitctl.records.stats import discordant, mcnemar_exact

    # b = 10, c = 2: 2 · (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 158 / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(3, 0) == pytest.approx(0.25) and mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # large n (0.5**2200 underflows): 2 · P(X ≤ 1000), X ~ Bin(2200, ½), from exact integers
    from fractions import Fraction
    from math import comb

    exact = 2 * Fraction(sum(comb(2200, i) for i in range(1001)), 2**2200)
    assert mcnemar_exact(1200, 1000) == pytest.approx(float(exact), rel=1e-9)
    import numpy as np

    labels = np.array([0, 1, 2, 3, 0, 1])
    assert discordant(np.array([0, 1, 2, 0, 1, 1]), np.array([0, 0, 2, 3, 1, 2]), labels) == (2, 1)


def test_report_json_schema_arms_pairs_and_table4(cli, tmp_path):
    import numpy as np

    root = tmp_path / "runs"
    labels = np.arange(200) % 4
    wrong = (labels + 1) % 4

    def preds(n_wrong: int):
        return np.where(np.arange(200) < n_wrong, wrong, labels)

    runs = [
        make_run(root, "teacher", model="resnet18", top1=0.95),
        make_run(root, "none", top1=0.70),
        make_run(root, "soft-class", "soft", top1=0.71, teacher="runs/teacher"),
        make_run(root, "hard-class", "hard", top1=0.75, teacher="runs/teacher"),
        make_run(root, "hard-token", "hard", top1=0.80, heads=(0.78, 0.81), teacher="runs/teacher",
                 model="deit_tiny_distilled_patch16_224"),
    ]
    for run, n in zip(runs, (10, 60, 58, 50, 40), strict=True):
        save_predictions(run, preds(n), labels, heads=(preds(44), preds(38)) if run.name == "hard-token" else None)
    out = tmp_path / "main" / "report.md"
    code, stdout, err = cli("report", *runs, "--out", out, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc == json.loads(out.with_suffix(".json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["teacher", "none", "soft-class", "hard-class", "hard-token"]
    for row in doc["rows"]:
        assert {"run", "method", "top1", "top1_cls", "top1_dist", "train_images", "optimizer_steps", "wall_s"} <= set(row)
    token = doc["rows"][-1]
    assert (token["top1_cls"], token["top1_dist"]) == (pytest.approx(78.0), pytest.approx(81.0))
    assert doc["rows"][1]["top1_dist"] is None and doc["rows"][1]["optimizer_steps"] == 30
    assert doc["rows"][1]["train_images"] == 30 * 256 and doc["total_wall_s"] == pytest.approx(5 * 754.0)
    pair = {(p["a"], p["b"]): p for p in doc["pairs"]}
    none_vs_token = pair[("none", "hard-token")]
    # none wrong on the first 60, hard-token fused on the first 40: b = 0, c = 20
    assert none_vs_token["disagreement"] == pytest.approx(20 / 200)
    assert none_vs_token["p_value"] == pytest.approx(2 * 0.5**20)
    assert ("none", "hard-token (distillation head)") in pair
    text = out.read_text()
    assert "| DeiT⚗: distillation embedding | 74.6 | 81.00 | +11.00 |" in text
    assert "| hard distillation | 74.3 | 75.00 | +5.00 |" in text
    assert "## Table 4: disagreement (200 test images)" in text
    assert "| ground truth | 0.000 | 0.050 |" in text  # the teacher's error rate: 10 of 200


def test_runs_on_different_test_sets_get_no_paired_statistics(cli, tmp_path):
    import numpy as np

    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", "hard", teacher="x")
    save_predictions(a, np.zeros(10), np.zeros(10))
    save_predictions(b, np.zeros(12), np.zeros(12))
    code, _, err = cli("report", a, b, "--out", tmp_path / "r.md")
    assert code == 2 and "runs a and b were evaluated on different test sets" in err and "\n" not in err.strip()
    save_predictions(b, np.zeros(10), np.zeros(10), dataset="cifar10")
    code, _, err = cli("report", a, b, "--out", tmp_path / "r.md")
    assert code == 2 and "different test sets" in err
