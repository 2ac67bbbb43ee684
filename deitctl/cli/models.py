"""Commands that take a model: ``eval``, ``bench``, ``info``, ``export``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from deitctl.cli.base import IMAGE_COLUMN, JSON_HELP, LABEL_COLUMN, PRECISION_HELP, SET_HELP, app
from deitctl.core.errors import UsageError

T = TypeVar("T")
MODEL_HELP = "Run/model dir, Hub repo (org/name[@rev], hf-hub:…), local-dir:PATH, .pth or timm name."
# bench table header → row key: short headers so the table fits an 80-column terminal
BENCH_TABLE = {"batch": "batch_size", "precision": "precision", "img/s": "img_per_s", "ms/batch": "ms_per_batch",
               "peak MiB": "peak_mem_mb", "params (M)": "params_m", "GMACs": "gmacs", "size": "img_size"}


def parse_list(text: str, kind: Callable[[str], T], option: str) -> list[T]:
    """``"1,32"`` → ``[1, 32]``; a clear usage error for empty or malformed items."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise UsageError(f"{option}: expected a comma-separated list like 1,32 (got '{text}')") from None
    if not values:
        raise UsageError(f"{option}: give at least one value")
    return values


@app.command("eval")
def eval_(
    model: str = typer.Argument(..., help=MODEL_HELP),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: the run's)."),
    split: str | None = typer.Option(None, "--split", help="Split (default: the recipe's eval split)."),
    batch_size: int = typer.Option(128, "--batch-size"),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (weights frozen in) first."),
    ema: bool = typer.Option(False, "--ema", help="Evaluate the EMA weights of a run."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Evaluate a fixed, seeded subset."),
    per_class: bool = typer.Option(False, "--per-class", help="Also report per-class accuracy."),
    confusion: Path | None = typer.Option(None, "--confusion", help="Write a confusion-matrix PNG."),
    image_column: str | None = IMAGE_COLUMN,
    label_column: str | None = LABEL_COLUMN,
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader worker processes (0: decode in-process)."),
    crop_pct: float | None = typer.Option(None, "--crop-pct", help="Resize to size/crop_pct, then center crop "
                                          "(default: the model's config; the authors evaluate every model at 0.875)."),
    save: bool = typer.Option(False, "--save", help="Keep the result in the model's directory: eval.json and "
                              "predictions.npz (per-image predictions, for the paired statistics of `deitctl report`)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Top-1/top-5 accuracy and loss; for distilled models also each head alone."""
    from deitctl.app.eval import EvalRequest, run
    from deitctl.core.console import emit_json, print_table

    result = run(EvalRequest(model, dataset, split, batch_size, precision, ema, max_samples, per_class,
                             str(confusion) if confusion else None, image_column, label_column, num_workers, compile_,
                             save, crop_pct))
    if result is None:  # not the main process of a multi-process run
        return
    if as_json:
        emit_json(result)
        return
    columns = [c for c in ("top1", "top5", "top1_cls", "top1_dist", "loss", "num_samples", "img_per_s") if c in result]
    print_table([result], columns, title=f"{Path(model).name} on {Path(result['dataset']).name} ({result['split']})")
    if "per_class" in result:
        print_table([{"class": k, "top1": v} for k, v in result["per_class"].items()], title="per class")


@app.command()
def bench(
    model: str = typer.Argument(..., help="Model reference, recipe name or timm model name."),
    batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="Comma-separated batch sizes."),
    precision: str | None = typer.Option(None, "--precision", help="Comma-separated: fp32, bf16, fp16, int8 "
                                         "(default fp32, plus bf16 where the hardware has it; an ONNX model "
                                         "runs fp32 only; int8 calibrates on random inputs: a speed figure)."),
    img_size: int | None = typer.Option(None, "--img-size"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model first."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs; the median is reported."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Throughput and peak memory per batch size and precision (the paper's Table 10 on this machine)."""
    from deitctl.app.bench import BenchRequest, run
    from deitctl.core.console import emit_json, print_table

    precisions = parse_list(precision, str, "--precision") if precision else None
    rows = run(BenchRequest(model, parse_list(batch_sizes, int, "--batch-sizes"), precisions, img_size=img_size,
                            compile_model=compile_, repeats=repeats))
    title = f"{Path(model).name} on {rows[0]['device']} ({rows[0]['runtime']})"
    if as_json:
        emit_json(rows)
    else:
        print_table([{header: row[key] for header, key in BENCH_TABLE.items()} for row in rows], title=title)


@app.command()
def info(
    ref: str = typer.Argument(..., metavar="MODEL_OR_RECIPE", help="Recipe name, timm model name or model reference."),
    img_size: int | None = typer.Option(None, "--img-size", help="Input resolution (default: the model's)."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Parameters and GMACs per image (multiply-accumulates ÷ 1e9, the paper's "FLOPs")."""
    from deitctl.app.info import InfoRequest, run
    from deitctl.core.console import emit_json, print_table

    row = run(InfoRequest(ref, img_size, sets))
    emit_json(row) if as_json else print_table([row], title=ref)


@app.command()
def export(
    model: str = typer.Argument(..., help="Model reference."),
    fmt: str = typer.Option("safetensors", "--format", help="safetensors, onnx or transformers."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    ema: bool = typer.Option(False, "--ema", help="Export the EMA weights of a run."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Parity check: max abs logit difference allowed."),
    dataset: str | None = typer.Option(None, "--dataset", help="Check parity on real images of this dataset too."),
    split: str = typer.Option("test", "--split", help="Split of --dataset to take images from."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: an ONNX file for ONNX Runtime on CPUs "
                                        "(int8 weights, dynamic int8 activations)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a model: timm-loadable safetensors, ONNX or transformers, each parity-checked against PyTorch."""
    from deitctl.app.export import ExportRequest, run
    from deitctl.core.console import emit_json, log, print_table
    from deitctl.export.parity import INT8_RELATIVE_TOLERANCE

    result = run(ExportRequest(model, fmt, out, ema, overwrite, tolerance, dataset, split, quantize))
    if as_json:
        emit_json(result.as_dict())
        return
    log(f"{result.format} export written to {result.path} ({', '.join(result.files)}); "
        f"checked with {result.verified_with or 'nothing'}")
    if result.relative_diff:  # int8: the float graph met --tolerance; the file is held to a relative bound
        rows = [{"inputs": k, "float diff": result.float_max_abs_diff[k], "int8 diff": v,
                 "int8 relative": result.relative_diff[k], "bound": INT8_RELATIVE_TOLERANCE}
                for k, v in result.max_abs_diff.items()]
    else:
        rows = [{"inputs": k, "max_abs_diff": v, "tolerance": result.tolerance} for k, v in result.max_abs_diff.items()]
    print_table(rows)


@app.command()
def predict(
    model: str = typer.Argument(..., help=MODEL_HELP),
    inputs: list[Path] = typer.Argument(..., metavar="IMAGE_OR_DIR...", help="Images, or directories of images "
                                        "(walked recursively)."),
    top_k: int = typer.Option(5, "--top-k", help="Classes per image."),
    batch_size: int = typer.Option(32, "--batch-size"),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    attention: Path | None = typer.Option(None, "--attention", metavar="OUT_DIR", help="Write a PNG per image: the "
                                          "image beside its class (and distillation) token's attention, last block "
                                          "and rollout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --attention directory."),
    num_workers: int = typer.Option(2, "--num-workers", help="Image-decoding worker processes."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one JSON object per image and line (path, "
                                 "top_k, heads), to read as a stream."),
) -> None:
    """Classify images: top-k classes with probabilities, each head of a distilled model, attention maps."""
    import json

    from deitctl.app.predict import PredictRequest, run
    from deitctl.core.console import log, print_table

    result = run(PredictRequest(model, inputs, top_k, batch_size, precision, attention, overwrite, num_workers))
    rows = result["predictions"]
    if as_json:
        typer.echo("".join(json.dumps(r) + "\n" for r in rows), nl=False)
    else:
        table = []
        for r in rows:
            best = r["top_k"][0]
            row = {"image": r["path"], "top-1": _name(best), "prob": best["prob"],
                   "next": ", ".join(f"{_name(t)} {t['prob']:.2f}" for t in r["top_k"][1:3])}
            if "heads" in r:
                row |= {"class head": _name(r["heads"]["class"][0]), "dist. head": _name(r["heads"]["distillation"][0])}
            table.append(row)
        print_table(table, title=f"{Path(model).name} ({result['precision']})")
    log(f"{len(rows)} images classified, {len(result['skipped'])} skipped"
        + (f"; attention maps in {result['attention']}" if result["attention"] else ""))


def _name(top: dict) -> str:
    """A predicted class's name, or its index when the model has no class names."""
    return str(top["index"]) if top["label"] is None else top["label"]
