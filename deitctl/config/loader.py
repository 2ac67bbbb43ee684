"""Named recipes: YAML files with inheritance, validated against the schema, overridable from the CLI.

A recipe file may name a ``base`` recipe and override some of its keys; files whose name starts
with ``_`` are bases only. ``$DEITCTL_RECIPES`` adds user recipe directories before the shipped ones.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from deitctl.config.recipe import Recipe
from deitctl.core.errors import UsageError, did_you_mean


# --------------------------------------------------------------------------------------------- files
def recipe_dirs() -> list[Path]:
    """Where recipes live: ``$DEITCTL_RECIPES`` (user recipes, first), then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("DEITCTL_RECIPES", "").split(os.pathsep) if p]
    shipped = Path(str(resources.files("deitctl"))) / "recipes"  # inside an installed wheel
    source = Path(__file__).resolve().parents[2] / "recipes"  # in a source checkout
    dirs += [d for d in (shipped, source) if d.is_dir()]
    return dirs


def _recipe_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(recipe_dirs()):  # earlier directories win
        for f in sorted(d.glob("*.yaml")):
            found[f.stem] = f
    return found


def is_recipe(ref: str) -> bool:
    """True when ``ref`` names a recipe (or is a recipe .yaml file) rather than a model."""
    return ref in _recipe_files() or (ref.endswith((".yaml", ".yml")) and Path(ref).is_file())


def public_recipes() -> list[str]:
    """Names of runnable recipes (``_base`` files are only inherited from)."""
    return sorted(n for n in _recipe_files() if not n.startswith("_"))


def list_recipes() -> list[tuple[str, str]]:
    """(name, description) of every runnable recipe, sorted by name."""
    return [(name, load_recipe(name).description) for name in public_recipes()]


def _find(ref: str) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    files = _recipe_files()
    if ref in files:
        return files[ref]
    raise UsageError(f"unknown recipe '{ref}'{did_you_mean(ref, public_recipes())}; see `deitctl recipes list`")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: malformed YAML ({getattr(e, 'problem', e)}); fix the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe must be a mapping of keys to values")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve_raw(ref: str, chain: tuple[str, ...] = ()) -> tuple[dict[str, Any], Path]:
    path = _find(ref)
    if str(path) in chain:
        raise UsageError(f"{path}: recipe inheritance cycle ({' -> '.join([*chain, str(path)])})")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data, path
    if not isinstance(base, str):
        raise UsageError(f"{path}: key 'base' must be a recipe name")
    try:
        base_data, _ = _resolve_raw(base, (*chain, str(path)))
    except UsageError as e:
        raise UsageError(f"{path}: base recipe: {e}") from None
    return _deep_merge(base_data, data), path


def _format_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "?"
    if e["type"] == "extra_forbidden":
        hint = did_you_mean(key.split(".")[-1], Recipe.model_fields)
        return f"{source}: unknown key '{key}'{hint}"
    if e["type"] == "missing":
        return f"{source}: missing required key '{key}'"
    return f"{source}: key '{key}': {e['msg']} (got {e.get('input')!r})"


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value), with the value read as YAML (so 0.1, true, null are typed)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"bad --set '{item}': expected key=value, e.g. --set lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = dict(data)
    for item in overrides:
        keys, value = parse_override(item)
        if keys[0] not in Recipe.model_fields:
            raise UsageError(f"bad --set key '{keys[0]}'{did_you_mean(keys[0], Recipe.model_fields)}")
        if len(keys) > 1 and keys[0] != "model_args":
            raise UsageError(f"bad --set key '{'.'.join(keys)}': only model_args takes dotted sub-keys")
        node = data
        for k in keys[:-1]:
            node[k] = dict(node.get(k) or {})
            node = node[k]
        node[keys[-1]] = value
    return data


def validate(data: dict[str, Any], source: str) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise UsageError(_format_error(e, source)) from None


def load_recipe(ref: str, overrides: list[str] | None = None) -> Recipe:
    """Resolve a recipe by name (or .yaml path), apply its bases, then ``--set`` overrides, and validate."""
    data, path = _resolve_raw(ref)
    data.setdefault("name", path.stem)
    recipe = validate(data, str(path))
    if overrides:
        recipe = validate(apply_overrides(data, overrides), "--set")
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """JSON/YAML-friendly dict (tuples become lists)."""
    return recipe.model_dump(mode="json")


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
