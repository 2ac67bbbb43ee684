"""scripts/main.sh end to end at toy size: teacher, the four Table 3 students, evals, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_smoke(tmp_path):
    out = tmp_path / "main"
    env = {**os.environ, "SKIP_SETUP": "1", "OUT": str(out), "TRAIN_SAMPLES": "128", "TEACHER_EPOCHS": "1",
           "STUDENT_EPOCHS": "1", "EVAL_SAMPLES": "128", "EXTRA_TEACHER": "--max-eval-samples 32",
           "EXTRA_STUDENT": "--set model_args.depth=1 --max-eval-samples 32",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DEITCTL_CACHE": str(tmp_path / "c")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "main.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    methods = {row["method"]: row for row in report["rows"]}
    assert set(methods) == {"teacher", "none", "soft-class", "hard-class", "hard-token"}
    assert methods["hard-token"]["top1_dist"] is not None and methods["none"]["top1_dist"] is None
    trained = {m: (r["train_images"], r["optimizer_steps"]) for m, r in methods.items() if m != "teacher"}
    assert len(set(trained.values())) == 1  # every student: the same images and number of optimizer steps
    assert ("fashion-deit-ti", "fashion-deit-ti-distilled") in {(p["a"], p["b"]) for p in report["pairs"]}
    assert all(0 <= p["p_value"] <= 1 and 0 <= p["disagreement"] <= 1 for p in report["pairs"])
    assert (out / "report.md").read_text().count("|") > 20
    assert (out / "report_curves.png").stat().st_size > 0
    stages = dict(line.split("\t") for line in (out / "timings.tsv").read_text().splitlines()[1:])
    assert {"teacher", "fashion-deit-ti-distilled", "report", "total"} <= set(stages)
    assert "main.sh: CPU class " in done.stderr and "expected wall time" in done.stderr
    # the teacher's outputs, computed once: the hard-class student, trained first, computes and stores them all;
    # DeiT⚗ and the soft student, trained after it on the same images, read them all
    outputs = {run: json.loads((out / run / "summary.json").read_text())["teacher_outputs"]
               for run in ("fashion-deit-ti-soft", "fashion-deit-ti-hard", "fashion-deit-ti-distilled")}
    steps = methods["none"]["optimizer_steps"]
    assert {run: (o["computed"], o["read"]) for run, o in outputs.items()} == {
        "fashion-deit-ti-hard": (steps, 0), "fashion-deit-ti-distilled": (0, steps), "fashion-deit-ti-soft": (0, steps)}
