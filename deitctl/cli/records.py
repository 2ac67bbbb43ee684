"""Commands about recipes, datasets and runs: ``recipes list|show``, ``data show``, ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deitctl.cli.base import DATASET_ARG, IMAGE_COLUMN, JSON_HELP, LABEL_COLUMN, SET_HELP, app, data_app, recipes_app

MAX_NAMES_SHOWN = 20  # class names printed by `data show` (all of them with --json)
MAX_PROBLEMS_SHOWN = 50  # problems printed by `data check` (all of them with --json)


@recipes_app.command("list")
def recipes_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the named recipes."""
    from deitctl.app.recipes import listing
    from deitctl.core.console import emit_json, print_table

    rows = listing()
    emit_json(rows) if as_json else print_table(rows, title="recipes")


@recipes_app.command("show")
def recipes_show(
    name: str = typer.Argument(..., help="Recipe name or path to a .yaml file."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a fully resolved recipe (bases applied, overrides applied)."""
    import yaml

    from deitctl.app.recipes import show
    from deitctl.core.console import emit_json

    recipe = show(name, sets)
    emit_json(recipe) if as_json else typer.echo(yaml.safe_dump(recipe, sort_keys=False), nl=False)


@data_app.command("show")
def data_show(
    dataset: str = DATASET_ARG,
    split: str | None = typer.Option(None, "--split", help="Only this split."),
    image_column: str | None = IMAGE_COLUMN,
    label_column: str | None = LABEL_COLUMN,
    grid: Path | None = typer.Option(None, "--grid", help="Write a PNG grid of augmented training samples."),
    recipe: str = typer.Option("fashion-deit-ti", "--recipe", help="Recipe whose augmentation the grid shows."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Split sizes, classes and columns of a dataset; optionally a grid of augmented samples."""
    from deitctl.app.data import ShowRequest, show
    from deitctl.core.console import emit_json

    summary = show(ShowRequest(dataset, split, image_column, label_column, grid, recipe))
    emit_json(summary) if as_json else _print_summary(summary)


@data_app.command("check")
def data_check(
    dataset: str = DATASET_ARG,
    split: str | None = typer.Option(None, "--split", help="Only this split (default: all)."),
    image_column: str | None = IMAGE_COLUMN,
    label_column: str | None = LABEL_COLUMN,
    num_workers: int = typer.Option(2, "--num-workers", help="Decoding worker processes."),
    streaming: bool = typer.Option(False, "--streaming", help="Read the data as a stream (always, for shards)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Decode every image and check every label before a long run; exit 1 listing the unreadable or mislabelled."""
    from deitctl.app.check import CheckRequest, check
    from deitctl.core.console import emit_json, log, print_table

    result = check(CheckRequest(dataset, split, image_column, label_column, num_workers, streaming=streaming))
    problems = result["problems"]
    if as_json:
        emit_json(result)
    elif problems:
        shown = [{"split": p["split"], "index": p["index"], "file": p["path"] or "(embedded)", "problem": p["problem"]}
                 for p in problems[:MAX_PROBLEMS_SHOWN]]
        print_table(shown, title=f"{len(problems)} problems in {dataset}")
    log(f"checked {result['checked']} images in {', '.join(result['splits'])}: "
        + (f"{len(problems)} problems" if problems else "all readable, all labels valid"))
    if problems:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(
    source: str = DATASET_ARG,
    out: Path = typer.Argument(..., help="Folder to write the shards (and README.md) into; resumed if unfinished."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or webdataset (.tar)."),
    shard_size: str = typer.Option("500MB", "--shard-size", help="Approximate bytes of images per shard."),
    split: str | None = typer.Option(None, "--split", help="Only this split (default: all)."),
    image_column: str | None = IMAGE_COLUMN,
    label_column: str | None = LABEL_COLUMN,
    max_samples: int | None = typer.Option(None, "--max-samples", help="A seeded subset of each split."),
    seed: int = typer.Option(0, "--seed", help="Order of the training split's samples (and of --max-samples)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write a dataset as parquet or WebDataset shards (class names kept) for --streaming and the Hub."""
    from deitctl.app.convert import ConvertRequest, convert
    from deitctl.core.console import emit_json, log, print_table

    result = convert(ConvertRequest(source, out, fmt, shard_size, split, image_column, label_column, max_samples,
                                    seed))
    if as_json:
        emit_json(result)
    else:
        print_table([{"split": k, **v} for k, v in result["splits"].items()], title=f"{source} → {out} ({fmt})")
    if result["reencoded"]:
        log(f"{result['reencoded']} images were in another format than the first and were re-encoded to it")
    log(f"wrote {out}; train from it with `deitctl train RECIPE --dataset {out} --streaming`")


def _print_summary(summary: dict[str, Any]) -> None:
    from deitctl.core.console import console, print_table

    rows = [{"split": name, "images": size} for name, size in summary["splits"].items()]
    print_table(rows, title=summary["dataset"])
    names = summary["class_names"]
    more = f", … ({len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else ""
    console.print(f"classes ({summary['num_classes']}): {', '.join(names[:MAX_NAMES_SHOWN])}{more}")
    console.print(f"image column: {summary['image_column']}   label column: {summary['label_column']}")
    console.print("columns: " + ", ".join(f"{k} ({v})" for k, v in summary["features"].items()))
    size = summary["first_image"]
    console.print(f"first image: {size['width']}×{size['height']} {size['mode']}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run directories."),
    out: Path = typer.Option(Path("report.md"), "--out", help="Markdown report to write."),
    dataset: str | None = typer.Option(None, "--dataset"),
    attention_images: int = typer.Option(0, "--attention-images", help="Also show where each transformer looks "
                                         "(attention rollout) on this many test images; loads the models."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The paper's Table 3 and Table 4 over finished runs: markdown + JSON + curves, paired McNemar tests."""
    from deitctl.app.report import ReportRequest, run
    from deitctl.core.console import emit_json, log

    result = run(ReportRequest(runs, out, dataset, attention_images))
    if as_json:
        emit_json(result.document)
    else:
        typer.echo(result.table, nl=False)
    log(f"wrote {', '.join(str(f) for f in result.files)}")
