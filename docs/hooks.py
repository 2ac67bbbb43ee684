"""MkDocs hook: generate the recipes page and the CLI reference from the code at build time.

Hand-written copies of recipe tables and ``--help`` output go stale the day someone adds a key or a
flag; generating them means ``mkdocs build --strict`` (run by scripts/test.sh) always documents what
the code does. A page asks for generated content with a placeholder line such as
``<!-- generated: cli-reference -->``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import click

PLACEHOLDER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
HELP_WIDTH = 100


# --------------------------------------------------------------------------------- CLI reference
def iter_commands(command: click.Command, name: str = "deitctl", parent: click.Context | None = None
                  ) -> Iterator[tuple[click.Context, click.Command]]:
    """Every command and subcommand, depth first, each with the context its help is rendered in."""
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=HELP_WIDTH,
                        max_content_width=HELP_WIDTH, **command.context_settings)
    yield ctx, command
    if isinstance(command, click.Group) or hasattr(command, "list_commands"):
        for sub in command.list_commands(ctx):
            yield from iter_commands(command.get_command(ctx, sub), sub, ctx)


def plain_help(ctx: click.Context, command: click.Command) -> str:
    """Click's plain-text ``--help`` (Typer would otherwise print rich panels to the terminal)."""
    command.rich_markup_mode = None  # get_command() builds fresh objects, so this touches nothing else
    return command.get_help(ctx)


def cli_reference() -> str:
    import typer

    from deitctl.cli import app

    parts = []
    for ctx, command in iter_commands(typer.main.get_command(app)):
        summary = command.get_short_help_str(limit=HELP_WIDTH)
        parts.append(f"## {ctx.command_path}\n\n{summary}\n\n```text\n{plain_help(ctx, command)}\n```\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------- recipes
def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    """Table-safe text: no pipes, "—" for nothing."""
    if value is None or value == "":
        return "—"
    return _num(value).replace("|", "\\|")


def base_chain(name: str) -> list[str]:
    """The recipes ``name`` inherits from, nearest first (read from the YAML ``base`` keys)."""
    import yaml

    from deitctl.config.loader import _find

    chain = []
    while True:
        base = (yaml.safe_load(_find(name).read_text()) or {}).get("base")
        if not base or base in chain:
            return chain
        chain.append(base)
        name = base


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(":---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _augmentation(r: Any) -> str:
    parts = [r.rand_augment or "no RandAugment"]
    if r.mixup or r.cutmix:
        parts.append(f"mixup {_num(r.mixup)} / cutmix {_num(r.cutmix)}")
    if r.reprob:
        parts.append(f"erasing {_num(r.reprob)}")
    if r.repeated_aug:
        parts.append(f"{r.repeated_aug}× repeated aug.")
    return ", ".join(parts)


def recipes_page() -> str:
    from deitctl.config.loader import load_recipe, public_recipes

    names = public_recipes()
    recipes = {n: load_recipe(n) for n in names}
    chains = {n: base_chain(n) for n in names}
    bases = sorted({b for chain in chains.values() for b in chain if b.startswith("_")})

    overview = _table(["recipe", "inherits from", "description"],
                      [[f"`{n}`", " → ".join(chains[n]), recipes[n].description] for n in names])
    training = _table(
        ["recipe", "model", "dataset", "img", "epochs", "batch", "lr → effective", "optimizer", "wd", "drop-path",
         "augmentation"],
        [[f"`{n}`", f"`{r.model}`", r.dataset, r.img_size, r.epochs, r.batch_size,
          f"{_num(r.lr)} → {_num(r.effective_lr)}", r.optimizer, r.weight_decay, r.drop_path, _augmentation(r)]
         for n, r in recipes.items()],
    )
    distilled = _table(
        ["recipe", "type", "teacher", "λ (distillation_alpha)", "τ (distillation_tau)"],
        [[f"`{n}`", r.distillation_type, f"`{r.teacher}`", r.distillation_alpha, r.distillation_tau]
         for n, r in recipes.items() if r.is_distilled],
    )
    base_rows = [[f"`{b}`", " → ".join(base_chain(b)), load_recipe(b).description] for b in bases]
    return "\n".join([
        "## Overview\n", overview,
        "## Training hyper-parameters\n",
        "*batch* is the global batch; *effective* lr is lr × batch / `lr_base_batch`, the linear scaling rule.\n",
        training,
        "## Distillation\n", distilled,
        "## Base recipes\n",
        "Files whose name starts with `_` are only inherited from; they cannot be trained directly.\n",
        _table(["base", "inherits from", "description"], base_rows),
    ])


# ------------------------------------------------------------------------------------------ hook
GENERATORS: dict[str, Callable[[], str]] = {"cli-reference": cli_reference, "recipes": recipes_page}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace each placeholder line by its generated markdown; an unknown placeholder fails the build."""

    def generate(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown placeholder '{key}' (known: {', '.join(GENERATORS)})")
        return GENERATORS[key]()

    return PLACEHOLDER.sub(generate, markdown)
