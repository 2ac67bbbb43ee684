"""A run directory, read and written in one place, with one error policy.

    RUN/recipe.yaml        the fully resolved recipe (how the model was trained)
    RUN/run.json           the command-line choices that shape the data (sample caps, columns), for --resume
    RUN/metrics.jsonl      one record per epoch (train loss, lr, img/s, eval metrics); per-step losses
    RUN/summary.json       written when training finishes
    RUN/eval.json          written by ``deitctl eval`` of the run (beats the end-of-training eval)
    RUN/predictions.npz    per-image test predictions of that eval (paired statistics in reports)
    RUN/config.json + model.safetensors [+ model_ema.safetensors]   the final model, timm's format
    RUN/checkpoints/       resumable checkpoints (``deitctl.training.checkpoint``)
    RUN/curves.png, RUN/tb/    plots and TensorBoard scalars
    RUN/.deitctl.lock      who writes the run now: one writer at a time (``RunDir.lock``)

Policy: a file that is missing reads as empty (None, {} or []); a file that is there but malformed is
an error naming it — a damaged record is never silently taken for an absent one. The last line of
metrics.jsonl alone may be partial (a run still being written) and is skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.atomic import write_text
from deitctl.core.errors import UsageError
from deitctl.core.lock import FileLock

if TYPE_CHECKING:
    from deitctl.config.recipe import Recipe

RECIPE, OPTIONS, METRICS, SUMMARY, EVAL = "recipe.yaml", "run.json", "metrics.jsonl", "summary.json", "eval.json"
PREDICTIONS, CURVES, CHECKPOINTS = "predictions.npz", "curves.png", "checkpoints"
LOCK = ".deitctl.lock"  # held by the one process writing the run (deitctl.core.lock)
_RUN_MARKERS = (CHECKPOINTS, METRICS, "model.safetensors")  # a directory holding any of these holds a run


def distillation_head_learned(recipe: dict[str, Any]) -> bool:
    """A ⚗ model's distillation head learned from a teacher, or (recipe key ``label_both_heads``) from the labels.
    Runs from before that key trained without a teacher left it untrained: their prediction is the class head
    alone, not the late fusion."""
    return recipe.get("distillation_type", "none") != "none" or bool(recipe.get("label_both_heads", False))


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def lock(self, purpose: str) -> FileLock:
        """The run's one-writer lock (not yet taken): ``train``, ``finetune``, ``--resume`` and ``--overwrite``."""
        return FileLock(self.path / LOCK, purpose, label=str(self.path))

    def is_run(self) -> bool:
        """Started by ``deitctl train`` (a model directory alone has no recipe)."""
        return (self.path / RECIPE).is_file()

    def holds_run(self) -> bool:
        """Something a new run must not write over."""
        return any((self.path / name).exists() for name in _RUN_MARKERS)

    # ----------------------------------------------------------------------------------- reading
    def recipe_data(self) -> dict[str, Any]:
        """recipe.yaml as plain data, not validated: a run written by an older deitctl still reads."""
        import yaml

        path = self.path / RECIPE
        if not path.is_file():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            raise UsageError(f"{path}: malformed YAML; restore the file from the run's recipe or delete it") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of recipe keys")
        return data

    def taught_distillation_head(self) -> bool:
        """Whether a ⚗ model's distillation head learned (see :func:`distillation_head_learned`); a directory without
        a recipe (a pulled or exported model): True."""
        data = self.recipe_data()
        return not data or distillation_head_learned(data)

    def recipe(self) -> Recipe:
        """recipe.yaml validated against today's schema (what ``--resume`` continues with)."""
        from deitctl.config.loader import load_recipe

        return load_recipe(str(self.path / RECIPE))

    def options(self) -> dict[str, Any]:
        return self._json(OPTIONS) or {}

    def summary(self) -> dict[str, Any] | None:
        return self._json(SUMMARY)

    def eval_result(self) -> dict[str, Any] | None:
        return self._json(EVAL)

    def metrics(self) -> list[dict[str, Any]]:
        """One record per line. A broken *last* line is skipped: that is a run still being written."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        records = []
        for i, line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if i == lines[-1][0]:
                    break
                raise UsageError(f"{path}:{i}: malformed JSON line") from None
            if isinstance(record, dict):
                records.append(record)
        return records

    def predictions(self) -> dict[str, Any] | None:
        """The per-image predictions of the saved eval: numpy arrays, plus ``dataset``/``split`` strings."""
        import numpy as np

        path = self.path / PREDICTIONS
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: (str(data[k]) if data[k].dtype.kind == "U" else data[k]) for k in data.files}
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: unreadable ({e}); run `deitctl eval {self.path} --save` again") from None

    def _json(self, name: str) -> dict[str, Any] | None:
        path = self.path / name
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: malformed JSON (line {e.lineno}: {e.msg}); delete it or run again") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a JSON object")
        return data

    # ----------------------------------------------------------------------------------- writing
    def create(self, recipe_yaml: str, options: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / RECIPE, recipe_yaml)
        self._write_json(OPTIONS, options)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._write_json(SUMMARY, summary)

    def write_eval(self, result: dict[str, Any]) -> None:
        self._write_json(EVAL, result)

    def write_predictions(self, arrays: dict[str, Any], dataset: str, split: str) -> None:
        import numpy as np

        from deitctl.core.atomic import atomic_path

        with atomic_path(self.path / PREDICTIONS) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, dataset=np.str_(dataset), split=np.str_(split), **arrays)

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        write_text(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in history))

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        write_text(self.path / name, json.dumps(data, indent=2, default=str) + "\n")

    def set_aside(self) -> Path:
        """Rename the directory out of the way (``--overwrite``): a user's run is never deleted."""
        backup = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        self.path.rename(backup)
        return backup
