"""The pictures a run leaves: training curves (one run or several side by side) and a confusion matrix.

Drawn with matplotlib's Agg canvas (no display needed) and written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deitctl.core.atomic import atomic_path

HEADS = (("top1", "top-1 (fused)"), ("top1_cls", "class head"), ("top1_dist", "distillation head"))


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: str | Path, dpi: int = 110) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def train_loss_points(history: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Training loss against (fractional) epochs: every optimizer step where the run logged them
    (``step_losses``), else one point per epoch."""
    xs, ys = [], []
    for row in history:
        steps = row.get("step_losses") or []
        if steps:
            n = len(steps)
            xs += [row["epoch"] - 1 + (k + 1) / n for k in range(n)]
            ys += [float(loss) for _, loss in steps]
        elif isinstance(row.get("train_loss"), (int, float)):
            xs.append(float(row["epoch"]))
            ys.append(float(row["train_loss"]))
    return xs, ys


def eval_points(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(float(r["epoch"]), float(r["eval"][key])) for r in history
              if isinstance((r.get("eval") or {}).get(key), (int, float))]
    return [x for x, _ in points], [y for _, y in points]


def plot_curves(runs: Mapping[str, Sequence[dict[str, Any]]], out: str | Path, title: str = "",
                scales: Mapping[str, float] | None = None) -> None:
    """Loss (train solid, per step where logged; eval dashed) and eval top-1 per epoch, side by side.

    One run shows each head of a distilled model; several runs show each run's fused top-1 in its own
    colour. ``scales`` multiplies a run's stored accuracies to percent (1 unless it stored fractions).
    """
    fig = _figure((11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    heads = HEADS if len(runs) == 1 else HEADS[:1]
    for i, (name, history) in enumerate(runs.items()):
        color, scale = f"C{i % 10}", (scales or {}).get(name, 1.0)
        label = name if len(runs) > 1 else "train"
        ax_loss.plot(*train_loss_points(history), color=color, linewidth=0.8, label=f"{label} (train)")
        ax_loss.plot(*eval_points(history, "loss"), color=color, linestyle="--", marker="o", markersize=3,
                     label=f"{label} (eval)")
        for j, (key, head) in enumerate(heads):
            xs, ys = eval_points(history, key)
            if xs:
                ax_acc.plot(xs, [y * scale for y in ys], marker="o", markersize=3,
                            color=color if len(runs) > 1 else f"C{j}", label=name if len(runs) > 1 else head)
    ax_loss.set(title="loss (solid: train, dashed: eval)", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="eval top-1", xlabel="epoch", ylabel="top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, out)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str | Path, title: str = "") -> None:
    """A row-normalised confusion matrix (true class × predicted class)."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(class_names)
    side = min(4 + 0.4 * n, 40)
    fig = _figure((side, side))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 50:  # beyond that the labels overlap; the colours still tell the story
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
    if n <= 20:
        for i, j in np.ndindex(n, n):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path, dpi=100)


def save_grid(pixels: Any, titles: list[str], out: Path, suptitle: str) -> Path:
    """Images (N × H × W × C in 0..1) in a square grid, each with its title."""
    import math

    cols = math.ceil(math.sqrt(len(pixels)))
    rows = math.ceil(len(pixels) / cols)
    fig = _figure((2 * cols, 2.2 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, pixels, titles, strict=False):
        gray = img.shape[-1] == 1
        ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    _save(fig, out, dpi=100)
    return out


def plot_attention(image: Any, maps: Mapping[str, Any], out: str | Path, title: str = "") -> None:
    """The image beside each attention map (upsampled to it, drawn over a faded copy): one row."""
    import numpy as np

    fig = _figure((2.4 * (1 + len(maps)), 2.8))
    axes = fig.subplots(1, 1 + len(maps), squeeze=False)[0]
    gray = image.ndim == 2 or image.shape[-1] == 1
    picture = image[..., 0] if image.ndim == 3 and gray else image
    axes[0].imshow(picture, cmap="gray" if gray else None, vmin=0, vmax=1)
    axes[0].set_title("image", fontsize=8)
    h, w = picture.shape[:2]
    for ax, (name, heat) in zip(axes[1:], maps.items(), strict=True):
        ax.imshow(picture, cmap="gray" if gray else None, vmin=0, vmax=1, alpha=0.35, extent=(0, w, h, 0))
        ax.imshow(np.asarray(heat, dtype=float), cmap="inferno", alpha=0.65, vmin=0, vmax=1, extent=(0, w, h, 0),
                  interpolation="nearest")
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    _save(fig, out, dpi=100)


def plot_attention_grid(images: Sequence[Any], columns: Mapping[str, Sequence[Any]], out: str | Path,
                        title: str = "") -> None:
    """Rows of test images; per column (a run and a token) the attention rollout over each image."""
    import numpy as np

    rows, cols = len(images), 1 + len(columns)
    fig = _figure((1.9 * cols, 1.9 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, image in enumerate(images):
        gray = image.shape[-1] == 1
        picture = image[..., 0] if gray else image
        h, w = picture.shape[:2]
        axes[r][0].imshow(picture, cmap="gray" if gray else None, vmin=0, vmax=1)
        for c, (name, maps) in enumerate(columns.items(), 1):
            ax = axes[r][c]
            ax.imshow(picture, cmap="gray" if gray else None, vmin=0, vmax=1, alpha=0.35, extent=(0, w, h, 0))
            ax.imshow(np.asarray(maps[r], dtype=float), cmap="inferno", alpha=0.65, vmin=0, vmax=1,
                      extent=(0, w, h, 0), interpolation="nearest")
            if r == 0:
                ax.set_title(name, fontsize=7)
    axes[0][0].set_title("test image", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    _save(fig, out, dpi=100)
