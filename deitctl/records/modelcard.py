"""The README.md model card ``deitctl push`` publishes: Hub metadata up front, the run's story below.

The YAML front matter is what the Hub indexes (``library_name: timm`` enables its "use in timm"
snippet; ``model-index`` puts the accuracy on the model page). The body tells a reader how the model
was trained (recipe summary), how good it is (metrics table, training curves) and how to load it.

Everything is read from the run directory (``RunDir``) and nothing else (no clock, no host names), so
the same run always yields the same card and re-pushing an unchanged run makes no commit. A plain model
directory (config + weights only) gets a card without results rather than invented numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deitctl.records.rundir import CURVES, RunDir

if TYPE_CHECKING:
    from deitctl.models.types import LoadedModel

RECIPE_KEYS = ("model", "dataset", "img_size", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
               "scheduler", "warmup_epochs", "drop_path", "label_smoothing", "mixup", "cutmix", "rand_augment",
               "repeated_aug", "ema", "distillation_type", "teacher", "distillation_alpha", "distillation_tau",
               "init_from")
METRICS = (("top1", "Top-1 accuracy", "accuracy"), ("top5", "Top-5 accuracy", "top-5-accuracy"),
           ("top1_cls", "Top-1, class head", "accuracy"), ("top1_dist", "Top-1, distillation head", "accuracy"))


# ------------------------------------------------------------------------------------- reading
def final_results(run: RunDir, recipe: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's evaluation: ``eval.json`` (a deliberate ``deitctl eval``) beats the last epoch's eval."""
    results = run.eval_result() or {}
    if not results:
        results = next((dict(r["eval"]) for r in reversed(history) if isinstance(r.get("eval"), dict)), {})
        if results:
            results.setdefault("dataset", recipe.get("dataset"))
            results.setdefault("split", recipe.get("eval_split"))
    if any(isinstance(results.get(k), (int, float)) for k, *_ in METRICS):
        scale = 100.0 if all(float(results[k]) <= 1.0 for k, *_ in METRICS if k in results) else 1.0
        return {**results, **{k: round(float(results[k]) * scale, 2) for k, *_ in METRICS if k in results}}
    return {}


def card_results(readme: Path) -> dict[str, Any]:
    """The results a pushed card records (its ``model-index``): {"top1": 91.2, …, "dataset", "split"} in percent,
    as ``final_results`` wrote them; {} for a card that records none (or one deitctl did not write)."""
    text = readme.read_text() if readme.is_file() else ""
    try:
        meta = yaml.safe_load(text.split("---\n")[1]) if text.startswith("---\n") else {}
        result = meta["model-index"][0]["results"][0]
    except (yaml.YAMLError, LookupError, TypeError, AttributeError):
        return {}
    names = {label: key for key, label, _ in METRICS}
    values = {names[m["name"]]: m["value"] for m in result.get("metrics") or [] if m.get("name") in names}
    scored = result.get("dataset") or {}
    return {**values, **({"dataset": scored["name"]} if "name" in scored else {}),
            **({"split": scored["split"]} if "split" in scored else {})}


def hub_dataset_id(name: str | None) -> str | None:
    """The Hub id of a dataset name (``fashion-mnist`` → ``zalando-datasets/fashion_mnist``); None for local paths."""
    if not name or Path(name).exists() or name.startswith((".", "/")):
        return None
    from deitctl.data.sources import NAMED

    source = NAMED.get(name)
    return source.hub_id if source is not None else (name if "/" in name else None)


# ------------------------------------------------------------------------------------- writing
def build_card(run_dir: Path, repo_id: str, loaded: LoadedModel, demo_url: str | None = None) -> str:
    """The full README.md for ``repo_id`` from run (or model) directory ``run_dir`` and its loaded model; with
    ``demo_url``, a link to the Space that shows it working (``push --demo``)."""
    from deitctl.models.inspect import count_params, input_size, is_distilled

    run = RunDir(run_dir)
    recipe = run.recipe_data()
    history = run.metrics()
    results = final_results(run, recipe, history)
    distilled = is_distilled(loaded.model)
    c, h, _ = input_size(loaded.model)
    facts = {"arch": loaded.arch, "params_m": round(count_params(loaded.model) / 1e6, 2), "input": f"{c}×{h}×{h}",
             "classes": loaded.num_classes, "distilled": distilled}
    meta = front_matter(repo_id, recipe, results, distilled)
    body = [
        f"# {repo_id.split('/')[-1]}\n",
        _summary_line(facts, recipe),
        *_section("Demo", f"[Try it in the browser]({demo_url}): drop an image, see the top classes of each head and "
                  "where the model looks (a Gradio Space running `deitctl demo`).\n" if demo_url else ""),
        *_section("Training recipe", _recipe_table(recipe)),
        *_section("Results", _results_table(results, distilled)),
        *_section("Training curves", "![training curves](curves.png)\n" if (run / CURVES).is_file() else ""),
        *_section("Per-epoch evaluation", _history_table(history)),
        *_section("How to use", _usage(repo_id)),
        *_section("Classes", ", ".join(f"`{n}`" for n in loaded.label_names) + "\n" if loaded.label_names else ""),
    ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)


def front_matter(repo_id: str, recipe: dict[str, Any], results: dict[str, Any], distilled: bool) -> dict[str, Any]:
    tags = ["image-classification", "timm", "deit", "vision-transformer", "deitctl"]
    if distilled or recipe.get("distillation_type") not in (None, "none"):
        tags.append("distillation")
    meta: dict[str, Any] = {"library_name": "timm", "license": recipe.get("license", "apache-2.0"),
                            "pipeline_tag": "image-classification", "tags": tags}
    dataset = hub_dataset_id(results.get("dataset") or recipe.get("dataset"))
    if dataset:
        meta["datasets"] = [dataset]
    metrics = [{"type": kind, "value": results[key], "name": label} for key, label, kind in METRICS if key in results]
    if metrics:
        meta["model-index"] = [{
            "name": repo_id.split("/")[-1],
            "results": [{
                "task": {"type": "image-classification", "name": "Image Classification"},
                "dataset": {"name": str(results.get("dataset") or recipe.get("dataset") or "unknown"),
                            "type": dataset or str(results.get("dataset") or "local"),
                            **({"split": str(results["split"])} if results.get("split") else {})},
                "metrics": metrics,
            }],
        }]
    return meta


def _section(title: str, content: str) -> list[str]:
    return [f"## {title}\n", content] if content else []


def _summary_line(facts: dict[str, Any], recipe: dict[str, Any]) -> str:
    kind = "distilled DeiT (class + distillation token)" if facts["distilled"] else "DeiT vision transformer"
    epochs = recipe.get("epochs", "?")
    trained = f", trained on `{recipe['dataset']}` for {epochs} epoch{'' if epochs == 1 else 's'}" \
        if recipe.get("dataset") else ""
    return (f"A {kind} — timm architecture `{facts['arch']}`, {facts['params_m']} M parameters, input "
            f"{facts['input']}, {facts['classes']} classes{trained}. Published with deitctl.\n")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|") if value is not None else "—"


def _recipe_table(recipe: dict[str, Any]) -> str:
    rows = [[f"`{k}`", recipe[k]] for k in RECIPE_KEYS if recipe.get(k) not in (None, "")]
    return _table(["key", "value"], rows) if rows else ""


def _results_table(results: dict[str, Any], distilled: bool) -> str:
    if not results:
        return ""
    rows = [[label, f"{results[key]:.2f} %"] for key, label, _ in METRICS if key in results]
    if isinstance(results.get("loss"), (int, float)):
        rows.append(["Loss", round(float(results["loss"]), 4)])
    if results.get("num_samples"):
        rows.append(["Images evaluated", results["num_samples"]])
    where = " / ".join(str(results[k]) for k in ("dataset", "split") if results.get(k))
    fused = " The fused prediction averages both heads' logits." if distilled else ""
    return (f"Evaluated on {where}.{fused}\n\n" if where or fused else "") + _table(["metric", "value"], rows)


def _history_table(history: list[dict[str, Any]]) -> str:
    rows = [[r.get("epoch"), r.get("train_loss"), r["eval"].get("top1"), r["eval"].get("top5"), r["eval"].get("loss")]
            for r in history if isinstance(r.get("eval"), dict)]
    return _table(["epoch", "train loss", "top-1", "top-5", "eval loss"], rows[-20:]) if rows else ""


def _usage(repo_id: str) -> str:
    return f"""With deitctl (downloads safetensors only, checks the sha256 and that config and weights agree):

```bash
deitctl eval {repo_id}                # on the dataset this card names (--dataset D for another)
deitctl predict {repo_id} photo.jpg   # top classes of each head, --json: one object per image
deitctl pull {repo_id} --out model/
```

With timm:

```python
import timm
import torch

model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
config = timm.data.resolve_data_config({{}}, model=model)
transform = timm.data.create_transform(**config)
with torch.no_grad():
    probabilities = model(transform(image).unsqueeze(0)).softmax(-1)
```
"""
