"""The record a run writes while it trains: metrics.jsonl and curves.png each epoch, and the experiment trackers
the recipe reports to (``report_to``).

Trackers are accelerate's own (``accelerate.tracking``, what ``Accelerator(log_with=...)`` builds): TensorBoard
(the default, its files in RUN/tb), Weights & Biases and MLflow, each configured as its users expect (``WANDB_MODE``,
``WANDB_PROJECT``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``: offline modes work as they do elsewhere).
Each receives the run's hyper-parameters once (the resolved recipe, flattened), the loss of every optimizer step
(``train/step_loss``) and each epoch's figures (``train/…``, ``eval/…``) at the step they were measured.

Only the main process writes. metrics.jsonl and curves.png are replaced atomically, so a run killed at any moment
leaves the last complete record behind.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from deitctl.core.errors import DeitctlError, UsageError
from deitctl.records.plots import plot_curves
from deitctl.records.rundir import CURVES, RunDir

# tracker → (the module it needs, the deitctl extra that installs it); tensorboard comes with deitctl
TRACKERS = {"tensorboard": ("tensorboard", None), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
EPOCH_KEYS = ("train_loss", "lr", "img_per_s", "epoch_time_s")
PROJECT = "deitctl"  # the W&B project / MLflow experiment when the environment names none


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_report_to(names: list[str]) -> list[str]:
    """The trackers a run reports to: ``all`` is every one installed, ``none`` is none. A tracker whose package is
    missing is one line with its install command, said before anything is written (``training.plan``)."""
    if "none" in names:
        return []
    if "all" in names:
        wanted = [name for name, (module, _) in TRACKERS.items() if _installed(module)]
    else:
        wanted = list(dict.fromkeys(names))
    for name in wanted:
        module, extra = TRACKERS[name]
        if not _installed(module):
            raise UsageError(f"--report-to {name} needs the {module} package: pip install 'deitctl[{extra}]' "
                             "(or report elsewhere: --report-to tensorboard)")
    sqlite = _installed("sqlalchemy") and _installed("alembic")  # what the full mlflow adds to mlflow-skinny
    if "mlflow" in wanted and not os.environ.get("MLFLOW_TRACKING_URI") and not sqlite:
        raise UsageError("MLflow keeps runs in sqlite:///mlflow.db unless MLFLOW_TRACKING_URI says otherwise, and its "
                         "sqlite store needs the full package (pip install mlflow); or set MLFLOW_TRACKING_URI to a "
                         "tracking server (http://HOST:5000) or a file store (file:./mlruns, with "
                         "MLFLOW_ALLOW_FILE_STORE=true)")
    return wanted


def hyperparameters(recipe: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The recipe as flat scalars, what every tracker stores (``model_args.depth``; lists and None as text)."""
    flat: dict[str, Any] = {}
    for key, value in recipe.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}


def start_tracker(name: str, run: RunDir, config: dict[str, Any]) -> Any:
    """One of accelerate's trackers, started as ``Accelerator.init_trackers`` starts it, holding ``config``."""
    from accelerate import PartialState
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    PartialState()  # the trackers log on the main process only, which accelerate's state tells (a run has one)
    kind = LOGGER_TYPE_TO_CLASS[name]
    try:
        if name == "tensorboard":
            tracker = kind("tb", str(run.path))  # accelerate writes to logging_dir/run_name: RUN/tb, as before
        elif name == "wandb":
            tracker = kind(os.environ.get("WANDB_PROJECT", PROJECT), name=run.name, dir=str(run.path))
        else:
            tracker = kind(experiment_name=PROJECT, run_name=run.name)
        if hasattr(tracker, "start"):  # accelerate >= 1.4 starts a tracker apart from building it
            tracker.start()
        tracker.store_init_configuration(config)
    except DeitctlError:
        raise
    except Exception as e:  # a tracker's own failure (no W&B login, an unreachable MLflow server): one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DeitctlError(f"{name} could not start ({type(e).__name__}: {first}); fix its setup or leave it out "
                           "with --report-to" + (" (WANDB_MODE=offline logs without an account)" if name == "wandb"
                                                 else "")) from None
    return tracker


class RunLog:
    def __init__(self, run: RunDir, enabled: bool, history: list[dict[str, Any]] | None = None) -> None:
        self.run, self.enabled = run, enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self.trackers: list[Any] = []
        if enabled:
            recipe = run.recipe_data()
            config = hyperparameters(recipe)
            for name in resolve_report_to(recipe.get("report_to", ["tensorboard"])):
                self.trackers.append(start_tracker(name, run, config))

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        self.run.write_metrics(self.history)
        epoch = {f"train/{key}": row[key] for key in EPOCH_KEYS}
        epoch |= {f"eval/{k}": v for k, v in (row.get("eval") or {}).items() if isinstance(v, (int, float))}
        for tracker in self.trackers:
            for step, loss in row.get("step_losses") or []:
                tracker.log({"train/step_loss": loss}, step=int(step))
            tracker.log(epoch, step=row["step"])
        plot_curves({self.run.name: self.history}, self.run / CURVES, title=self.run.name)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
