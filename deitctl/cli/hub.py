"""``deitctl push`` and ``deitctl pull`` (``deitctl.app.hub``)."""

from __future__ import annotations

from pathlib import Path

import typer

from deitctl.cli.base import JSON_HELP, app


@app.command()
def push(
    model: str = typer.Argument(..., help="Run or model directory to publish."),
    repo_id: str = typer.Argument(..., help="Target repo, org/name."),
    revision: str | None = typer.Option(None, "--revision"),
    private: bool = typer.Option(False, "--private"),
    message: str | None = typer.Option(None, "--message"),
    hub_dir: Path | None = typer.Option(None, "--hub-dir", help="A local directory acting as the hub."),
    demo: bool = typer.Option(False, "--demo", help="Also publish a Gradio Space of the same name that runs "
                              "`deitctl demo` on the model (app.py, requirements.txt); the card links to it."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Publish a model (weights, config, model card) to the Hub in one commit; --demo: and a Space showing it."""
    from deitctl.app.hub import PushRequest
    from deitctl.app.hub import push as run
    from deitctl.core.console import emit_json, log

    result = run(PushRequest(Path(model), repo_id, revision, private, message, hub_dir, demo))
    if as_json:
        emit_json(result)
    else:
        state = "pushed" if result["changed"] else "unchanged, no new commit:"
        log(f"{state} {result['repo_id']}@{result['revision']} commit {result['commit']} ({result['url']})")
        if "space" in result:
            space = result["space"]
            log(f"{'pushed' if space['changed'] else 'unchanged:'} the Space {space['repo_id']} ({space['url']})")


@app.command()
def pull(
    repo: str = typer.Argument(..., help="org/name[@revision]"),
    out: Path | None = typer.Option(None, "--out", help="Copy the model here (default: the cache)."),
    hub_dir: Path | None = typer.Option(None, "--hub-dir", help="A local directory acting as the hub."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Download a model from the Hub and verify its weights."""
    from deitctl.app.hub import PullRequest
    from deitctl.app.hub import pull as run
    from deitctl.core.console import emit_json, print_table

    result = run(PullRequest(repo, out, hub_dir, overwrite)).as_dict()
    if as_json:
        emit_json(result)
    else:
        print_table([{k: result[k] for k in ("repo_id", "revision", "commit", "path", "sha256")}])
