"""The documentation's generated pages cover the whole app, and the prose invents no flags.

Cheap checks only: scripts/test.sh runs the real `mkdocs build --strict` separately.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from deitctl.cli import app
from deitctl.config.loader import load_recipe, public_recipes

DOCS = Path(__file__).resolve().parent.parent / "docs"
CODE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```|`([^`\n]+)`", re.DOTALL)
COMMAND_END = {"|", ">", ">>", "#", "&&", ";", "||"}


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("deitctl_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def commands(hooks) -> dict[tuple[str, ...], click.Command]:
    """("deitctl", "recipes", "list") → the click command, for every command of the app."""
    return {tuple(ctx.command_path.split()): cmd for ctx, cmd in hooks.iter_commands(typer.main.get_command(app))}


def app_command_paths() -> set[str]:
    """Command paths read from Typer's own registry, independently of the docs generator."""
    paths = {f"deitctl {c.name or c.callback.__name__}" for c in app.registered_commands}
    for group in app.registered_groups:
        paths |= {f"deitctl {group.name} {c.name or c.callback.__name__}" for c in group.typer_instance.registered_commands}
    return paths


def test_cli_reference_covers_every_command(hooks):
    page = hooks.cli_reference()
    headings = set(re.findall(r"^## (.+)$", page, re.MULTILINE))
    assert app_command_paths() <= headings
    assert {"deitctl report", "deitctl recipes show", "deitctl data show"} <= headings
    assert "--per-device-batch" in page and "\x1b[" not in page  # real flags, plain text (no ANSI)


def test_recipes_page_covers_every_public_recipe(hooks):
    page = hooks.recipes_page()
    for name in public_recipes():
        recipe = load_recipe(name)
        assert page.count(f"| `{name}` |") == (3 if recipe.is_distilled else 2), name  # overview, training, distillation
    assert "| `fashion-deit-ti-soft` | soft | `runs/fashion-teacher` | 0.1 | 3 |" in page
    assert "fashion-deit-ti → _fashion → _deit" in page


def test_placeholders_are_substituted_and_unknown_ones_fail(hooks):
    class Page:
        class file:
            src_path = "x.md"

    out = hooks.on_page_markdown("# CLI\n\n<!-- generated: cli-reference -->\n", Page, None, None)
    assert "## deitctl train" in out and "<!--" not in out
    with pytest.raises(ValueError, match="unknown placeholder 'nope'"):
        hooks.on_page_markdown("<!-- generated: nope -->\n", Page, None, None)


def _command_lines(text: str) -> list[list[str]]:
    """Token lists of every shell line (code blocks and inline code) that runs deitctl."""
    lines = []
    for block, inline in CODE.findall(text):
        for line in (block or inline).replace("\\\n", " ").splitlines():
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                continue
            starts = [i for i, t in enumerate(tokens) if t in ("deitctl", "deitctl.cli")]
            if starts:
                lines.append(tokens[starts[0]:])
    return lines


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_use_only_real_flags(commands, page):
    for tokens in _command_lines((DOCS / page).read_text()):
        path, rest = ["deitctl"], tokens[1:]
        while rest and (*path, rest[0]) in commands:
            path.append(rest.pop(0))
        command = commands[tuple(path)]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        for token in rest:
            if token in COMMAND_END:
                break
            if token.startswith("--"):
                assert token.split("=")[0] in known, f"{page}: `{' '.join(tokens)}`: {token} is not a flag of {' '.join(path)}"
