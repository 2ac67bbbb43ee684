"""What ``deitctl demo`` shows, computed without Gradio: one image → the top classes of each head, the attention
rollout drawn over the image, and what was done to the image; the model's facts; a few test images to try.

The classes and probabilities are ``predict``'s — same model loading, preprocessing, precision, ``Predictor`` and
rounding — so the page and ``deitctl predict --json`` agree on a file to the last digit shown. The attention is a
second pass through the same model with the explicit attention path (``evaluation.attention``). One image is
classified at a time (a lock; the page's queue holds the rest), so memory does not grow with the visitors: an image
is decoded within ``data.images.open_bounded``'s limit, and whatever cannot be read is a message, not an error.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deitctl.core.errors import DeitctlError, UsageError

HEADS = {"class": "Class token head", "distillation": "Distillation token head", "fused": "Fused (mean of both heads)"}
TOKENS = {"class rollout": "class token", "distillation rollout": "distillation token"}
EXAMPLE_ROWS = 64  # examples: the first images of each class among this many test images


@dataclass
class Answer:
    """What the page shows for one image: a headline (top-1, or why there is none), each head's {class: p},
    the rollout maps, notes; ``row`` is the JSON line ``predict --json`` writes for the same file."""

    headline: str
    labels: list[dict[str, float] | None] = field(default_factory=list)
    maps: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    row: dict[str, Any] | None = None


class DemoModel:
    """A loaded, warmed-up model that answers one image at a time (thread-safe)."""

    def __init__(self, ref: str, top_k: int = 5, precision: str = "auto") -> None:
        import torch

        from deitctl.app.predict import fuses, runtime_for
        from deitctl.data.transforms import eval_transform
        from deitctl.evaluation.attention import check_vit
        from deitctl.models.inspect import is_distilled
        from deitctl.models.refs import load_model
        from deitctl.runtime.predictor import Predictor

        self.ref, self.top_k = ref, top_k
        self.loaded = load_model(ref)
        self.device, self.precision = runtime_for(self.loaded, precision)
        self.fuse = fuses(self.loaded)
        self.distilled = self.loaded.runtime == "torch" and is_distilled(self.loaded.model)
        self.transform = eval_transform(self.loaded.data_config)
        self.mode = "L" if self.loaded.data_config.channels == 1 else "RGB"
        self.predictor = Predictor(self.loaded.model, self.precision, self.device)
        try:
            check_vit(self.loaded.model, "the attention view")
            self.tokens = [t for t in TOKENS if self.distilled or t.startswith("class")]
        except UsageError:  # an ONNX export or a convnet: classes only
            self.tokens = []
        self.lock = threading.Lock()
        with torch.inference_mode():  # the first visitor is answered by a model that has already run
            self.predictor(torch.zeros(1, *self.loaded.data_config.input_size))

    @property
    def heads(self) -> list[str]:
        """The titles of the top-k views: one for a plain model, each head and their fusion for a DeiT⚗."""
        return list(HEADS.values()) if self.distilled else ["Top classes"]

    def map_titles(self) -> list[str]:
        return [f"Attention rollout of the {TOKENS[t]}" for t in self.tokens]

    def classify(self, path: str | Path | None) -> Answer:
        """The answer for one image file; a file that cannot be classified gets a message saying why."""
        if path is None:
            return self._empty("Drop an image, or pick one of the examples.")
        from deitctl.data.images import open_bounded

        with self.lock:  # one image in memory at a time, whoever calls
            try:
                image, notes = open_bounded(Path(path), self.mode)
            except UsageError as e:
                return self._empty(f"**Not classified:** {e}")
            row, maps = self._run(Path(path), image)
        best = row["top_k"][0]
        which = "" if not self.distilled else " (fused: the mean of both heads)" if self.fuse else \
            " (class head: this run's distillation head never learned)"
        headline = f"Top-1: **{_name(best)}**, probability {best['prob']:.6f}{which}"
        tops = [row["heads"][h] for h in HEADS] if "heads" in row else [row["top_k"]]
        return Answer(headline, [{_name(t): t["prob"] for t in top} for top in tops], maps, notes, row)

    def _empty(self, headline: str) -> Answer:
        return Answer(headline, [None] * len(self.heads), [None] * len(self.tokens))

    def _run(self, path: Path, image: Any) -> tuple[dict[str, Any], list[Any]]:
        """predict's JSON row for the image, and the rollout of each token drawn over it."""
        import torch

        from deitctl.app.predict import describe
        from deitctl.data.transforms import unnormalised
        from deitctl.evaluation.attention import captured, overlay, token_maps

        batch = self.transform(image).unsqueeze(0)
        with torch.inference_mode():
            heads = self.predictor(batch)
        row = describe(path, heads, 0, self.loaded.label_names, self.top_k, self.fuse)
        if not self.tokens:
            return row, []
        model = self.loaded.model
        weights = next(model.parameters())
        with torch.inference_mode(), captured(model) as attention:
            model(batch.to(device=weights.device, dtype=weights.dtype))
        views = token_maps(attention, getattr(model, "num_prefix_tokens", 1), tuple(model.patch_embed.grid_size))
        config = self.loaded.data_config
        shown = unnormalised(batch, config.mean, config.std, config.channels)[0]
        return row, [overlay(shown, views[t][0].cpu().numpy()) for t in self.tokens]

    # ------------------------------------------------------------------------------------ the model's facts
    def facts(self) -> list[tuple[str, str]]:
        """(what, value) rows beside the image: architecture, size, input, classes, recorded accuracy, data config."""
        from deitctl.models.inspect import count_params

        loaded, config = self.loaded, self.loaded.data_config
        names = loaded.label_names
        kind = " — DeiT⚗ (class + distillation token)" if self.distilled else ""
        classes = f"{loaded.num_classes}: " + (", ".join(names[:12]) + (", …" if len(names) > 12 else "") if names
                                               else "no class names in its config (label_names), so shown as indices")
        stats = ", ".join(f"{m:.4g}" for m in config.mean) + " / " + ", ".join(f"{s:.4g}" for s in config.std)
        return [
            ("Model", f"`{self.ref}`"),
            ("Architecture", f"`{loaded.arch}`{kind}"),
            ("Parameters", f"{count_params(loaded.model) / 1e6:.2f} M" if loaded.runtime == "torch" else "—"),
            ("Input", "×".join(str(v) for v in config.input_size) + (" (grayscale)" if self.mode == "L" else " (RGB)")),
            ("Classes", classes),
            ("Accuracy at training", self.recorded_accuracy()),
            ("Data config", f"mean / std {stats}; resize {config.interpolation}, crop {config.crop_pct:g}"),
            ("Runs on", f"{self.device.type.upper()}, {self.precision}, {loaded.runtime}"),
        ]

    def recorded(self) -> dict[str, Any]:
        """The data the model records: its run's recipe, or the card it was pushed with (dataset, eval_split)."""
        from deitctl.app.eval import card_data
        from deitctl.records.rundir import RunDir

        path = self.loaded.path
        if path is None:
            return {}
        recipe = RunDir(path).recipe_data()
        return recipe if recipe.get("dataset") else card_data(path / "README.md")

    def recorded_accuracy(self) -> str:
        from deitctl.records.modelcard import card_results, final_results
        from deitctl.records.rundir import RunDir

        path = self.loaded.path
        if path is None:
            return "none recorded"
        run = RunDir(path)
        results = final_results(run, run.recipe_data(), run.metrics()) or card_results(path / "README.md")
        if not results.get("top1"):
            return "none recorded (no run records or model card beside the weights)"
        where = "/".join(str(results[k]) for k in ("dataset", "split") if results.get(k))
        top5 = f", top-5 {results['top5']:.2f} %" if results.get("top5") else ""
        return f"top-1 {results['top1']:.2f} %{top5}" + (f" on {where}" if where else "")

    # ------------------------------------------------------------------------------------------ examples
    def examples(self, limit: int) -> tuple[list[Path], str]:
        """Up to ``limit`` test images of the model's dataset, one per class, as PNG files (and what they are); none
        when the model records no dataset or it cannot be read here (offline and never downloaded, say)."""
        data = self.recorded()
        dataset, split = data.get("dataset"), data.get("eval_split") or "test"
        if not dataset or limit < 1:
            return [], ""
        try:
            paths = _write_examples(dataset, split, limit, Path(tempfile.mkdtemp(prefix="deitctl-demo-")))
        except (DeitctlError, OSError, ValueError, KeyError) as e:
            from deitctl.core.console import log

            log(f"[yellow]note:[/] no example images: {dataset} ({split}) could not be read here ({e})")
            return [], ""
        return paths, f"Test images of {dataset} ({split})"


def _write_examples(dataset: str, split: str, limit: int, out: Path) -> list[Path]:
    """The first image of each class among the split's first rows (streamed when the data is on the Hub)."""
    import io

    from PIL import Image

    from deitctl.data.sources import hub_backed
    from deitctl.data.splits import load_split, stream_head

    data = stream_head(dataset, split, rows=EXAMPLE_ROWS) if hub_backed(dataset) else load_split(dataset, split)
    paths, seen = [], set()
    for i in range(min(len(data.dataset), EXAMPLE_ROWS)):
        row = data.dataset[i]
        label, cell = row[data.label_column], row[data.image_column]
        if label in seen:
            continue
        seen.add(label)
        source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]
        name = "".join(c if c.isalnum() else "-" for c in str(data.class_names[label]))
        paths.append(out / f"{len(paths):02d}-{name}.png")
        with Image.open(source) as img:
            img.save(paths[-1])
        if len(paths) == limit:
            break
    return paths


def _name(top: dict[str, Any]) -> str:
    """A class as a person reads it: its name, or its index when the model has none."""
    return f"class {top['index']}" if top["label"] is None else top["label"]
