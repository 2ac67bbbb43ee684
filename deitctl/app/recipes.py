"""``deitctl recipes list|show``: the named recipes as data."""

from __future__ import annotations

from typing import Any

from deitctl.config.loader import list_recipes, load_recipe, recipe_to_dict


def listing() -> list[dict[str, str]]:
    return [{"name": n, "description": d} for n, d in list_recipes()]


def show(name: str, sets: list[str]) -> dict[str, Any]:
    """The fully resolved recipe: bases and ``--set`` overrides applied, validated."""
    return recipe_to_dict(load_recipe(name, sets))
