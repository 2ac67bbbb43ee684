"""``deitctl train`` and ``deitctl finetune``: one option set, one code path (``deitctl.app.train``)."""

from __future__ import annotations

from typing import Any

import typer

from deitctl.cli.base import app, with_run_options


def _train(recipe: str | None, options: dict[str, Any], finetune: bool, **extra: Any) -> None:
    from deitctl.app.train import TrainRequest, run
    from deitctl.core.console import emit_json
    from deitctl.training.plan import RunOptions

    as_json = options.pop("as_json")
    summary = run(TrainRequest(recipe, RunOptions(**options, **extra), finetune=finetune))
    if as_json:
        emit_json(summary)


@app.command()
@with_run_options
def train(
    recipe: str = typer.Argument(..., help="Recipe name (see `deitctl recipes list`) or .yaml path."),
    options: Any = None,
) -> None:
    """Train (and distill) a model from a recipe, on CPU, one GPU or many (under `accelerate launch`)."""
    _train(recipe, options, finetune=False)


@app.command()
@with_run_options
def finetune(
    recipe: str | None = typer.Argument(None, help="Recipe (default: the transfer recipe of --dataset)."),
    init_from: str | None = typer.Option(None, "--from", help="Model to start from: run/model dir, Hub repo, .pth, "
                                         "timm name."),
    img_size: int | None = typer.Option(None, "--img-size", help="New resolution (position embeddings are resized)."),
    options: Any = None,
) -> None:
    """Fine-tune a trained model on a new dataset or resolution (heads reset, position embeddings resized)."""
    _train(recipe, options, finetune=True, init_from=init_from, img_size=img_size)
