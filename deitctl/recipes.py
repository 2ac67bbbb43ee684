"""Named recipes: YAML files with inheritance, validated against one schema, overridable from the CLI.

A recipe is data, like timm's ``pretrained_cfg``: every hyper-parameter of a run lives here, so a run
directory's ``recipe.yaml`` alone says how a model was trained. A recipe file may name a ``base``
recipe and override some of its keys; files whose name starts with ``_`` are bases only.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deitctl.errors import UsageError, did_you_mean


class Recipe(BaseModel):
    """The fully resolved recipe. Key names follow the paper's Table 9 and the authors' flags."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = ""
    description: str = ""

    # model
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)  # extra timm kwargs: patch_size, depth, ...
    img_size: int = Field(224, gt=0)
    in_chans: int = Field(3, gt=0)
    num_classes: int | None = Field(None, gt=0)  # None: taken from the dataset
    drop: float = Field(0.0, ge=0, lt=1)
    drop_path: float = Field(0.1, ge=0, lt=1)
    init_from: str | None = None  # model reference to start from (fine-tuning)

    # data
    dataset: str = "imagenet-1k"
    train_split: str = "train"
    eval_split: str = "validation"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    eval_crop_pct: float = Field(0.875, gt=0, le=1)
    train_interpolation: Literal["bicubic", "bilinear", "random"] = "bicubic"
    num_workers: int = Field(4, ge=0)

    # optimisation (Table 9)
    epochs: int = Field(300, gt=0)
    batch_size: int = Field(1024, gt=0)  # global, across all processes and accumulation steps
    optimizer: Literal["adamw", "sgd"] = "adamw"
    opt_eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr: float = Field(5e-4, gt=0)  # base learning rate, before the linear scaling rule
    lr_base_batch: int = Field(512, gt=0)  # effective lr = lr * batch_size / lr_base_batch
    weight_decay: float = Field(0.05, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(5, ge=0)
    warmup_lr: float = Field(1e-6, ge=0)
    min_lr: float = Field(1e-5, ge=0)
    clip_grad: float | None = Field(None, gt=0)
    ema: bool = False
    ema_decay: float = Field(0.99996, gt=0, lt=1)

    # regularisation and augmentation (Table 9)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    rand_augment: str | None = "rand-m9-mstd0.5-inc1"
    mixup: float = Field(0.8, ge=0)
    cutmix: float = Field(1.0, ge=0)
    mixup_prob: float = Field(1.0, ge=0, le=1)
    mixup_switch_prob: float = Field(0.5, ge=0, le=1)
    reprob: float = Field(0.25, ge=0, le=1)
    remode: Literal["pixel", "rand", "const"] = "pixel"
    recount: int = Field(1, ge=1)
    repeated_aug: int = Field(3, ge=0)  # number of repeats; 0 = off

    # distillation through attention
    distillation_type: Literal["none", "soft", "hard"] = "none"
    teacher: str | None = None
    distillation_alpha: float = Field(0.5, ge=0, le=1)
    distillation_tau: float = Field(1.0, gt=0)

    # run mechanics
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps between mid-epoch checkpoints; 0 = per epoch only
    eval_every: int = Field(1, ge=0)  # epochs between evaluations; 0 = only at the end

    # speed levers (deitctl/speed.py): none changes what is computed beyond rounding; each can be turned off
    compile: bool = True  # torch.compile the frozen teacher (weights folded in)
    compile_student: bool | Literal["auto"] = "auto"  # auto: runs of >= 2,000 optimizer steps
    attention: Literal["auto", "fused", "math"] = "auto"  # auto: math when training on a CPU, fused elsewhere
    fused_optimizer: bool = True  # AdamW's fused kernel

    @property
    def effective_lr(self) -> float:
        """The paper's linear scaling rule: lr × global_batch / 512."""
        return self.lr * self.batch_size / self.lr_base_batch

    @property
    def is_distilled(self) -> bool:
        return self.distillation_type != "none"


# --------------------------------------------------------------------------------------------- files
def recipe_dirs() -> list[Path]:
    """Where recipes live: ``$DEITCTL_RECIPES`` (user recipes, first), then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("DEITCTL_RECIPES", "").split(os.pathsep) if p]
    shipped = Path(str(resources.files("deitctl"))) / "recipes"  # inside an installed wheel
    source = Path(__file__).resolve().parent.parent / "recipes"  # in a source checkout
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
