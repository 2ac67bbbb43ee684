"""``deitctl demo`` (``deitctl.app.demo``): a model in the browser."""

from __future__ import annotations

import typer

from deitctl.cli.base import PRECISION_HELP, app
from deitctl.cli.models import MODEL_HELP


@app.command()
def demo(
    model: str = typer.Argument(..., help=MODEL_HELP),
    port: int = typer.Option(7860, "--port", help="Port to serve the page on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface, for "
                             "other machines to reach)."),
    share: bool = typer.Option(False, "--share", help="Also ask Gradio for a temporary public link (goes through "
                               "Gradio's servers; off by default)."),
    top_k: int = typer.Option(5, "--top-k", help="Classes shown per head."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP.split(", or int8")[0] + "."),
    examples: int = typer.Option(8, "--examples", help="Test images of the model's dataset offered to try, one per "
                                 "class (0: none)."),
) -> None:
    """See a model work in the browser: drop an image, get each head's top classes and the attention rollout."""
    from deitctl.app.demo import DemoRequest, run

    run(DemoRequest(model, port, host, share, top_k, precision, examples))
