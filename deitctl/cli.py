"""The ``deitctl`` command line. It parses arguments and delegates; the work lives in the modules.

Only typer/rich are imported at module level so ``deitctl --help`` stays fast; torch, timm and
friends are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from deitctl.errors import DeitctlError

if TYPE_CHECKING:
    from deitctl.runsetup import RunOptions

app = typer.Typer(
    help="Train, distill, fine-tune, evaluate, export and publish DeiT vision transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
recipes_app = typer.Typer(help="List and show the named training recipes.", no_args_is_help=True)
data_app = typer.Typer(help="Inspect datasets as deitctl sees them.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")
app.add_typer(data_app, name="data")

_debug = bool(os.environ.get("DEITCTL_DEBUG"))

SET_HELP = "Override a recipe key, e.g. --set lr=1e-3 --set model_args.depth=2 (repeatable)."
TRAIN_PRECISION_HELP = "auto (bf16 where the hardware has it), fp32, bf16 or fp16; the recipe's precision key."
NO_COMPILE_HELP = "Do not torch.compile the teacher or the student (recipe keys compile, compile_student)."
JSON_HELP = "Print machine-readable JSON on stdout."


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    global _debug
    _debug = _debug or debug
    if version:
        from deitctl import __version__

        typer.echo(__version__)
        raise typer.Exit()


# --------------------------------------------------------------------------------------- recipes
@recipes_app.command("list")
def recipes_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the named recipes."""
    from deitctl.console import emit_json, print_table
    from deitctl.recipes import list_recipes

    rows = [{"name": n, "description": d} for n, d in list_recipes()]
    emit_json(rows) if as_json else print_table(rows, title="recipes")


@recipes_app.command("show")
def recipes_show(
    name: str = typer.Argument(..., help="Recipe name or path to a .yaml file."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a fully resolved recipe (bases applied, overrides applied)."""
    from deitctl.console import emit_json
    from deitctl.recipes import dump_recipe, load_recipe, recipe_to_dict

    recipe = load_recipe(name, sets)
    if as_json:
        emit_json(recipe_to_dict(recipe))
    else:
        typer.echo(dump_recipe(recipe), nl=False)


# ------------------------------------------------------------------------------------------ info
@app.command()
def info(
    ref: str = typer.Argument(..., metavar="MODEL_OR_RECIPE", help="Recipe name, timm model name or model reference."),
    img_size: int | None = typer.Option(None, "--img-size", help="Input resolution (default: the model's)."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Parameters and GMACs per image (multiply-accumulates ÷ 1e9, the paper's "FLOPs")."""
    from deitctl.console import emit_json, print_table
    from deitctl.models import model_info

    row = model_info(ref, img_size=img_size, overrides=sets)
    emit_json(row) if as_json else print_table([row], title=ref)


# ------------------------------------------------------------------------------------------ data
@data_app.command("show")
def data_show(
    dataset: str = typer.Argument(..., help="Dataset name, Hub id (org/name) or local path."),
    split: str | None = typer.Option(None, "--split", help="Only this split."),
    image_column: str | None = typer.Option(None, "--image-column", help="Image column, if it cannot be inferred."),
    label_column: str | None = typer.Option(None, "--label-column", help="Label column, if it cannot be inferred."),
    grid: Path | None = typer.Option(None, "--grid", help="Write a PNG grid of augmented training samples."),
    recipe: str = typer.Option("fashion-deit-ti", "--recipe", help="Recipe whose augmentation the grid shows."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Split sizes, classes and columns of a dataset; optionally a grid of augmented samples."""
    from deitctl.datashow import show

    show(dataset, split=split, image_column=image_column, label_column=label_column, grid=grid,
         recipe=recipe, as_json=as_json)


# ----------------------------------------------------------------------------------------- train
@app.command()
def train(
    recipe: str = typer.Argument(..., help="Recipe name (see `deitctl recipes list`) or .yaml path."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: the recipe's)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: runs/RECIPE)."),
    teacher: str | None = typer.Option(None, "--teacher", help="Teacher model reference (default: the recipe's)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Override the global batch size."),
    per_device_batch: int | None = typer.Option(None, "--per-device-batch", help="Cap on the per-device batch; the rest is gradient accumulation."),
    max_train_samples: int | None = typer.Option(None, "--max-train-samples", help="Train on a fixed, seeded subset."),
    max_eval_samples: int | None = typer.Option(None, "--max-eval-samples", help="Evaluate on a fixed, seeded subset."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    image_column: str | None = typer.Option(None, "--image-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    precision: str | None = typer.Option(None, "--precision", help=TRAIN_PRECISION_HELP),
    no_compile: bool = typer.Option(False, "--no-compile", help=NO_COMPILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
) -> None:
    """Train (and distill) a model from a recipe, on CPU, one GPU or many (under `accelerate launch`)."""
    from deitctl.runsetup import RunOptions

    opts = RunOptions(out=out, sets=sets, dataset=dataset, teacher=teacher, epochs=epochs, batch_size=batch_size,
                      per_device_batch=per_device_batch, max_train_samples=max_train_samples,
                      max_eval_samples=max_eval_samples, image_column=image_column, label_column=label_column,
                      resume=resume, overwrite=overwrite, precision=precision, no_compile=no_compile)
    _run_training(recipe, opts, as_json)


def _run_training(recipe: str, opts: RunOptions, as_json: bool) -> None:
    from deitctl.console import emit_json
    from deitctl.train import train as run_train

    summary = run_train(recipe, opts)
    if as_json:
        emit_json(summary)


@app.command()
def finetune(
    recipe: str | None = typer.Argument(None, help="Recipe (default: the transfer recipe of --dataset)."),
    init_from: str | None = typer.Option(None, "--from", help="Model to start from: run/model dir, Hub repo, .pth, timm name."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset to fine-tune on."),
    img_size: int | None = typer.Option(None, "--img-size", help="New resolution (position embeddings are resized)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory."),
    teacher: str | None = typer.Option(None, "--teacher", help="Teacher model reference."),
    epochs: int | None = typer.Option(None, "--epochs"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    per_device_batch: int | None = typer.Option(None, "--per-device-batch"),
    max_train_samples: int | None = typer.Option(None, "--max-train-samples"),
    max_eval_samples: int | None = typer.Option(None, "--max-eval-samples"),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: Path | None = typer.Option(None, "--resume"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    image_column: str | None = typer.Option(None, "--image-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    precision: str | None = typer.Option(None, "--precision", help=TRAIN_PRECISION_HELP),
    no_compile: bool = typer.Option(False, "--no-compile", help=NO_COMPILE_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fine-tune a trained model on a new dataset or resolution (heads reset, position embeddings resized)."""
    from deitctl.runsetup import RunOptions, finetune_recipe

    opts = RunOptions(out=out, sets=sets, dataset=dataset, teacher=teacher, init_from=init_from, epochs=epochs,
                      batch_size=batch_size, img_size=img_size, per_device_batch=per_device_batch,
                      max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                      image_column=image_column, label_column=label_column, resume=resume, overwrite=overwrite,
                      precision=precision, no_compile=no_compile)
    _run_training(finetune_recipe(recipe, dataset), opts, as_json)


# ------------------------------------------------------------------------------------ evaluation
@app.command("eval")
def eval_(
    model: str = typer.Argument(..., help="Run/model dir, Hub repo (org/name[@rev]), .pth or timm name."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: the run's)."),
    split: str | None = typer.Option(None, "--split", help="Split (default: the recipe's eval split)."),
    batch_size: int = typer.Option(128, "--batch-size"),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where the hardware has it), fp32, bf16 or fp16."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (weights frozen in) first."),
    ema: bool = typer.Option(False, "--ema", help="Evaluate the EMA weights of a run."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Evaluate a fixed, seeded subset."),
    per_class: bool = typer.Option(False, "--per-class", help="Also report per-class accuracy."),
    confusion: Path | None = typer.Option(None, "--confusion", help="Write a confusion-matrix PNG."),
    image_column: str | None = typer.Option(None, "--image-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    num_workers: int = typer.Option(2, "--num-workers", help="DataLoader worker processes (0: decode in-process)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Top-1/top-5 accuracy and loss; for distilled models also each head alone."""
    from deitctl.console import emit_json, print_table
    from deitctl.evaluate import run_eval

    result = run_eval(model, dataset, split, batch_size, precision, ema, max_samples, per_class,
                      str(confusion) if confusion else None, image_column, label_column, num_workers, compile_)
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
    precision: str | None = typer.Option(None, "--precision", help="Comma-separated: fp32, bf16, fp16 "
                                         "(default fp32,bf16; an ONNX model runs fp32 only)."),
    img_size: int | None = typer.Option(None, "--img-size"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model first."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs; the median is reported."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Throughput and peak memory per batch size and precision (the paper's Table 10 on this machine)."""
    from deitctl.bench import parse_list, run_bench, table_rows
    from deitctl.console import emit_json, print_table

    precisions = parse_list(precision, str, "--precision") if precision else None
    rows = run_bench(model, parse_list(batch_sizes, int, "--batch-sizes"), precisions, img_size=img_size,
                     compile_model=compile_, repeats=repeats)
    title = f"{Path(model).name} on {rows[0]['device']} ({rows[0]['runtime']})"
    emit_json(rows) if as_json else print_table(table_rows(rows), title=title)


# ------------------------------------------------------------------------------------ export/hub
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
    from deitctl.console import emit_json, log, print_table
    from deitctl.export import export_model

    result = export_model(model, fmt, out, ema, overwrite, tolerance, dataset, split, quantize)
    if as_json:
        emit_json(result.as_dict())
        return
    log(f"{result.format} export written to {result.path} ({', '.join(result.files)}); "
        f"checked with {result.verified_with or 'nothing'}")
    if result.relative_diff:  # int8: the float graph met --tolerance; the file is held to a relative bound
        from deitctl.export import INT8_RELATIVE_TOLERANCE

        rows = [{"inputs": k, "float diff": result.float_max_abs_diff[k], "int8 diff": v,
                 "int8 relative": result.relative_diff[k], "bound": INT8_RELATIVE_TOLERANCE}
                for k, v in result.max_abs_diff.items()]
    else:
        rows = [{"inputs": k, "max_abs_diff": v, "tolerance": result.tolerance} for k, v in result.max_abs_diff.items()]
    print_table(rows)


@app.command()
def push(
    model: str = typer.Argument(..., help="Run or model directory to publish."),
    repo_id: str = typer.Argument(..., help="Target repo, org/name."),
    revision: str | None = typer.Option(None, "--revision"),
    private: bool = typer.Option(False, "--private"),
    message: str | None = typer.Option(None, "--message"),
    hub_dir: Path | None = typer.Option(None, "--hub-dir", help="A local directory acting as the hub."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Publish a model (weights, config, model card) to the Hub in one commit."""
    from deitctl.console import emit_json, log
    from deitctl.hub import push_model

    result = push_model(Path(model), repo_id, revision, private, message, hub_dir)
    if as_json:
        emit_json(result)
    else:
        state = "pushed" if result["changed"] else "unchanged, no new commit:"
        log(f"{state} {result['repo_id']}@{result['revision']} commit {result['commit']} ({result['url']})")


@app.command()
def pull(
    repo: str = typer.Argument(..., help="org/name[@revision]"),
    out: Path | None = typer.Option(None, "--out", help="Copy the model here (default: the cache)."),
    hub_dir: Path | None = typer.Option(None, "--hub-dir", help="A local directory acting as the hub."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Download a model from the Hub and verify its weights."""
    from deitctl.console import emit_json, print_table
    from deitctl.hub import pull_model

    result = pull_model(repo, out, hub_dir, overwrite)
    if as_json:
        emit_json(result.as_dict())
    else:
        print_table([{k: result.as_dict()[k] for k in ("repo_id", "revision", "commit", "path", "sha256")}])


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run directories."),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown report to write."),
    dataset: str | None = typer.Option(None, "--dataset"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A Table 3-style markdown report and plots over several runs."""
    from deitctl.console import emit_json, log
    from deitctl.report import build_report

    result = build_report(runs, out, dataset=dataset)
    if as_json:
        emit_json(result.rows)
    else:
        typer.echo(result.table, nl=False)
    log(f"wrote {', '.join(str(f) for f in result.files)}")


def _one_line(error: BaseException) -> str:
    """The message of an error, on one line — also when torch re-raised it from a DataLoader worker."""
    from deitctl.errors import unwrap_worker_message

    return " ".join(unwrap_worker_message(str(error).strip()).split())


def main() -> None:
    """Console entry point: user errors become one line and an exit code, not a traceback."""
    try:
        app()
    except DeitctlError as e:
        if _debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug, not bad input: still no wall of text unless asked
        if _debug:
            raise
        print(f"error: {type(e).__name__}: {_one_line(e)} (re-run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
