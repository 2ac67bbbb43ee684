"""The Typer apps every command registers on, the options several commands share, and --debug.

Only typer/rich are imported here, so ``deitctl --help`` stays fast; each command imports what it
needs (torch, timm, …) when it runs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

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

state = {"debug": bool(os.environ.get("DEITCTL_DEBUG"))}

SET_HELP = "Override a recipe key, e.g. --set lr=1e-3 --set model_args.depth=2 (repeatable)."
JSON_HELP = "Print machine-readable JSON on stdout."
PRECISION_HELP = ("auto (bf16 where the hardware has it), fp32, bf16, fp16, or int8 (CPU: quantized, calibrated "
                  "on training images; needs deitctl[int8]).")
# options several commands take, declared once (typer copies them per command)
IMAGE_COLUMN = typer.Option(None, "--image-column", help="Image column, if it cannot be inferred.")
LABEL_COLUMN = typer.Option(None, "--label-column", help="Label column, if it cannot be inferred.")
DATASET_ARG = typer.Argument(..., help="Dataset name, Hub id (org/name) or local path.")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    state["debug"] = state["debug"] or debug
    if version:
        from deitctl import __version__

        typer.echo(__version__)
        raise typer.Exit()


# ------------------------------------------------------------------------- shared training options
# (name, type, option): every training command takes these, and they arrive as one RunOptions
RUN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("dataset", str | None, typer.Option(None, "--dataset", help="Dataset (default: the recipe's).")),
    ("out", Path | None, typer.Option(None, "--out", help="Run directory (default: runs/RECIPE).")),
    ("teacher", str | None, typer.Option(None, "--teacher", help="Teacher model reference (default: the recipe's).")),
    ("epochs", int | None, typer.Option(None, "--epochs", help="Override the recipe's epochs.")),
    ("batch_size", int | None, typer.Option(None, "--batch-size", help="Override the global batch size.")),
    ("per_device_batch", int | None, typer.Option(None, "--per-device-batch",
                                                  help="Cap on the per-device batch; the rest is gradient accumulation.")),
    ("max_train_samples", int | None, typer.Option(None, "--max-train-samples", help="Train on a fixed, seeded subset.")),
    ("max_eval_samples", int | None, typer.Option(None, "--max-eval-samples", help="Evaluate on a fixed, seeded subset.")),
    ("sets", list[str], typer.Option([], "--set", help=SET_HELP)),
    ("resume", Path | None, typer.Option(None, "--resume", help="Continue the run in this directory from its last checkpoint.")),
    ("overwrite", bool, typer.Option(False, "--overwrite", help="Set an existing run directory aside and start again.")),
    ("image_column", str | None, IMAGE_COLUMN),
    ("label_column", str | None, LABEL_COLUMN),
    ("precision", str | None, typer.Option(None, "--precision", help=PRECISION_HELP + " The recipe's precision key.")),
    ("no_compile", bool, typer.Option(False, "--no-compile",
                                      help="Do not torch.compile the teacher or the student (recipe keys compile, compile_student).")),
    ("streaming", bool, typer.Option(False, "--streaming", help="Read the data as a stream (Hub datasets, parquet or "
                                     "WebDataset shards): nothing copied first (recipe key streaming).")),
    ("as_json", bool, typer.Option(False, "--json", help="Print the final metrics as JSON.")),
]


def with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared training options to ``command``'s own parameters; it receives them as ``options`` (a dict)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
              for name, kind, option in RUN_OPTIONS]
    names = {name for name, _, _ in RUN_OPTIONS}

    def wrapper(**kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in names}
        command(**kwargs, options=options)

    wrapper.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper
