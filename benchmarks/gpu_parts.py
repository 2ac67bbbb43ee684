"""The small parts of the GPU check (benchmarks/gpu_check.sh) that need no timing loop of their own.

    python benchmarks/gpu_parts.py env --out OUT                 # GPU, library versions, unmet requirements
    python benchmarks/gpu_parts.py folder DIR [--classes 10]     # a learnable image folder, train/ and val/
    python benchmarks/gpu_parts.py parity --out OUT [--device cuda]
    python benchmarks/gpu_parts.py e2e --work WORK --out OUT     # part (c)'s three CLI results, one JSON
    python benchmarks/gpu_parts.py summary --out OUT [--status FILE]

A device lease is short and what comes back is at most 8 files from $OUT, so every part writes one JSON
(readable after a timeout cut the run short) and ``summary`` turns whatever exists into one markdown page.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# What deitctl needs that the device image does not hold, with pyproject's lower bounds (gpu_check.sh installs
# these from .gpu-wheels; everything else deitctl imports is in that image: docs/performance.md, "GPUs").
CARRIED = ("datasets", "pydantic")


def write_json(path: Path, obj: Any) -> None:
    """Whole-file writes, so a part killed by its timeout leaves the last complete document, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """The document, or None when the part never wrote it (skipped, or killed before its first write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- env
def unmet_requirements(pyproject: Path) -> list[str]:
    """pyproject's dependencies this Python does not satisfy: the device image's versions are not our pins."""
    import importlib.metadata

    import tomllib
    from packaging.requirements import Requirement

    unmet = []
    for spec in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{spec} (missing)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{spec} (have {have})")
    return unmet


def env(out: Path) -> int:
    """Print and record the machine and versions; exit 1 when torch, a carried package or deitctl does not import
    (env.json says which, so a failed lease still tells the next one what to carry)."""
    import importlib
    import importlib.metadata
    import os
    import platform

    names = ("torch", "torchvision", "timm", "accelerate", "transformers", "datasets", "pydantic", "pyarrow",
             "huggingface-hub", "safetensors", "typer", "rich", "numpy", "pillow", "triton")
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    missing = []
    for module in ("torch", "timm", *CARRIED, "deitctl.cli"):
        try:
            importlib.import_module(module)
        except Exception as e:  # an import error of any kind means the parts after this one cannot run
            missing.append(f"{module}: {type(e).__name__}: {e}")
    info: dict[str, Any] = {
        "python": platform.python_version(), "executable": sys.executable, "cpu_count": os.cpu_count(),
        "versions": versions, "import_errors": missing,
        "unmet_requirements": unmet_requirements(Path(__file__).resolve().parents[1] / "pyproject.toml"),
    }
    if "torch" in sys.modules:
        import torch

        info.update(cuda_available=torch.cuda.is_available(), torch_cuda=torch.version.cuda)
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_gib=round(
                props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                gpu_count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
    write_json(out / "env.json", info)
    print(json.dumps(info, indent=2))
    return 1 if missing else 0


# ------------------------------------------------------------------------------------------ folder
def make_folder(root: Path, classes: int = 10, train: int = 48, val: int = 8, size: int = 64, seed: int = 0) -> Path:
    """``root/{train,val}/class_k/i.png``: class k is a bright square in cell k of a 4×4 grid over RGB noise.

    Learnable in a few epochs (so a broken pipeline shows as chance accuracy), decodes in microseconds
    (the data pipeline is not what the check times), and needs no network: the device reaches nothing.
    """
    import numpy as np
    from PIL import Image

    if classes > 16:
        raise SystemExit("at most 16 classes: one cell of a 4×4 grid each")
    rng = np.random.default_rng(seed)
    cell = size // 4
    for split, per_class in (("train", train), ("val", val)):
        for k in range(classes):
            folder = root / split / f"class_{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            r, c = divmod(k, 4)
            for i in range(per_class):
                arr = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                arr[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] += 160
                Image.fromarray(arr, "RGB").save(folder / f"{i:04d}.png")
    return root


# ------------------------------------------------------------------------------------------ parity
def parity(out: Path, device: str, model_name: str, atol: float, batch: int, img_size: int) -> int:
    """Part (d): one model's fp32 logits and features on the CPU and on ``device``, through deitctl's Predictor.

    TF32 is switched off on the GPU: with it on, fp32 matmuls round to a 10-bit mantissa and the gap would
    measure TF32, not a device bug. Random weights suffice (the arithmetic is the same); the features (after
    the final norm, of order 1) are compared too, since a random head's logits are small and would hide a gap.
    """
    import copy

    import torch

    from deitctl.models.factory import build
    from deitctl.runtime.predictor import Predictor

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = build(model_name, img_size=img_size).eval()
    x = torch.randn(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    dev = torch.device(device)
    results: dict[str, torch.Tensor] = {}
    for where in (torch.device("cpu"), dev):
        copy_ = copy.deepcopy(model)
        logits = Predictor(copy_, "fp32", where)(x)[0].cpu()
        with torch.inference_mode():
            features = copy_.forward_features(x.to(where)).float().cpu()
        results[f"{where.type}_logits"], results[f"{where.type}_features"] = logits, features
    gap_logits = (results["cpu_logits"] - results[f"{dev.type}_logits"]).abs().max().item()
    gap_features = (results["cpu_features"] - results[f"{dev.type}_features"]).abs().max().item()
    same_top1 = bool((results["cpu_logits"].argmax(-1) == results[f"{dev.type}_logits"].argmax(-1)).all())
    ok = gap_logits <= atol and gap_features <= atol
    report = {"model": model_name, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "batch": batch, "img_size": img_size, "precision": "fp32, TF32 off", "atol": atol,
              "max_abs_diff_logits": gap_logits, "max_abs_logit": results["cpu_logits"].abs().max().item(),
              "max_abs_diff_features": gap_features, "max_abs_feature": results["cpu_features"].abs().max().item(),
              "same_top1": same_top1, "passed": ok and same_top1}
    write_json(out / "parity.json", report)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


# -------------------------------------------------------------------------------------------- e2e
def e2e(work: Path, out: Path) -> int:
    """Part (c)'s record: each CLI step's exit code (``WORK/<step>.rc``) and its --json output; 1 if any failed."""
    steps = {}
    for step in ("teacher", "student", "eval"):
        rc_file = work / f"{step}.rc"
        rc = int(rc_file.read_text()) if rc_file.is_file() else None
        steps[step] = {"exit_code": rc, "result": read_json(work / f"{step}.json")}
    passed = all(s["exit_code"] == 0 and s["result"] is not None for s in steps.values())
    write_json(out / "e2e.json", {"passed": passed, "steps": steps})
    print(json.dumps({k: v["exit_code"] for k, v in steps.items()}))
    return 0 if passed else 1


# ---------------------------------------------------------------------------------------- summary
def _e2e_lines(doc: dict[str, Any]) -> list[str]:
    """teacher / student rows from their ``deitctl train --json`` summaries, eval from ``deitctl eval --json``."""
    lines = ["| step | exit | train img/s (median epoch) | top-1 | wall s |", "|---|---:|---:|---:|---:|"]
    for step, s in doc["steps"].items():
        r = s["result"] or {}
        scored = (r if step == "eval" else r.get("eval")) or {}
        cells = (r.get("train_img_per_s"), scored.get("top1"), r.get("wall_time_s"))
        lines.append(f"| {step} | {s['exit_code']} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells)
                     + " |")
    return lines


def summary(out: Path, status: Path | None) -> None:
    """One markdown page of every part's figures, the paper's beside them; missing parts say so."""
    from gpu_table10 import render as render_table10
    from gpu_train_check import render as render_train

    info = read_json(out / "env.json") or {}
    lines = ["# GPU check", ""]
    if info:
        v = info["versions"]
        lines += [f"{info.get('gpu', 'no GPU')} (capability {info.get('capability', '—')}, "
                  f"{info.get('gpu_memory_gib', '—')} GiB), {info['cpu_count']} CPUs; Python {info['python']}, "
                  + ", ".join(f"{k} {v[k]}" for k in ("torch", "timm", "accelerate", "transformers", "datasets",
                                                      "pydantic")), ""]
        if info.get("unmet_requirements"):
            lines += ["pyproject requirements not met here: " + "; ".join(info["unmet_requirements"]), ""]
    if status is not None and status.is_file():
        lines += ["| part | exit | seconds | limit s |", "|---|---:|---:|---:|"]
        lines += [f"| {' | '.join(row.split())} |" for row in status.read_text().splitlines() if row.strip()]
        lines.append("")
    table10 = out / "table10.jsonl"
    rows = [json.loads(x) for x in table10.read_text().splitlines() if x.strip()] if table10.is_file() else []
    lines += ["## (a) Inference throughput beside the paper's Table 10", "", render_table10(rows), ""]
    cli = read_json(out / "bench_cli.json")
    if cli:
        lines += ["`deitctl bench` CLI, eager: " + "; ".join(
            f"{r['model']} batch {r['batch_size']} {r['precision']} {r['img_per_s']:.0f} img/s" for r in cli), ""]
    train = read_json(out / "train.json")
    lines += ["## (b) Training throughput with the RegNetY-16GF teacher", "",
              render_train(train) if train else "not run (or killed before its first student finished)", ""]
    doc = read_json(out / "e2e.json")
    lines += ["## (c) Two-epoch distillation end to end (synthetic folder)", ""]
    lines += _e2e_lines(doc) if doc else ["not run"]
    p = read_json(out / "parity.json")
    lines += ["", "## (d) CPU vs GPU logits", ""]
    lines.append(f"{p['model']}, batch {p['batch']}, {p['precision']}: max |Δlogit| {p['max_abs_diff_logits']:.2e} "
                 f"(logits up to {p['max_abs_logit']:.2f}), max |Δfeature| {p['max_abs_diff_features']:.2e}, "
                 f"same top-1 {p['same_top1']}, atol {p['atol']:g}: {'passed' if p['passed'] else 'FAILED'}"
                 if p else "not run")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("env")
    s.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("folder")
    s.add_argument("root", type=Path)
    s.add_argument("--classes", type=int, default=10)
    s.add_argument("--train", type=int, default=48, help="images per class in train/")
    s.add_argument("--val", type=int, default=8, help="images per class in val/")
    s.add_argument("--size", type=int, default=64)
    s = sub.add_parser("parity")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--model", default="deit_tiny_patch16_224")
    s.add_argument("--atol", type=float, default=1e-3)
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--img-size", type=int, default=224)
    s = sub.add_parser("e2e")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("summary")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--status", type=Path)
    a = p.parse_args()
    if a.cmd == "env":
        return env(a.out)
    if a.cmd == "folder":
        make_folder(a.root, a.classes, a.train, a.val, a.size)
        return 0
    if a.cmd == "parity":
        return parity(a.out, a.device, a.model, a.atol, a.batch, a.img_size)
    if a.cmd == "e2e":
        return e2e(a.work, a.out)
    summary(a.out, a.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
