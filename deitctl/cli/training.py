"""``deitctl train`` and ``deitctl finetune``: one option set, one code path (``deitctl.app.train``)."""

from __future__ import annotations

from typing import Any

import typer

from deitctl.cli.base import app, with_run_options

REPORT_TO = typer.Option(None, "--report-to", metavar="TRACKERS", help="Experiment trackers, comma-separated: "
                         "tensorboard (default, RUN/tb), wandb, mlflow, all (those installed) or none (recipe key "
                         "report_to).")


def _train(recipe: str | None, options: dict[str, Any], finetune: bool, report_to: str | None = None,
           **extra: Any) -> None:
    from deitctl.app.train import TrainRequest, run
    from deitctl.core.console import emit_json
    from deitctl.training.plan import RunOptions

    as_json = options.pop("as_json")
    if report_to is not None:  # a recipe key like any other: recipe.yaml records where the run reported
        options["sets"] = [*options["sets"], f"report_to={report_to}"]
    summary = run(TrainRequest(recipe, RunOptions(**options, **extra), finetune=finetune))
    if as_json:
        emit_json(summary)


@app.command()
@with_run_options
def train(
    recipe: str = typer.Argument(..., help="Recipe name (see `deitctl recipes list`) or .yaml path."),
    report_to: str | None = REPORT_TO,
    options: Any = None,
) -> None:
    """Train (and distill) a model from a recipe, on CPU, one GPU or many (under `accelerate launch`)."""
    _train(recipe, options, finetune=False, report_to=report_to)


@app.command()
@with_run_options
def finetune(
    recipe: str | None = typer.Argument(None, help="Recipe (default: the transfer recipe of --dataset)."),
    init_from: str | None = typer.Option(None, "--from", help="Model to start from: run/model dir, Hub repo, .pth, "
                                         "timm name."),
    img_size: int | None = typer.Option(None, "--img-size", help="New resolution (position embeddings are resized)."),
    report_to: str | None = REPORT_TO,
    options: Any = None,
) -> None:
    """Fine-tune a trained model on a new dataset or resolution (heads reset, position embeddings resized)."""
    _train(recipe, options, finetune=True, report_to=report_to, init_from=init_from, img_size=img_size)
