"""Checking an export against the PyTorch model it came from, on the inputs a deployment sees.

Seeded random tensors, flat (constant) images, and real images (``--dataset``, else synthetic
gradients/shapes) passed through the model's own eval preprocessing (its DataConfig).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from deitctl.core.errors import DeitctlError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.models.types import LoadedModel

Runner = Callable[["torch.Tensor"], "torch.Tensor"]
INT8_RELATIVE_TOLERANCE = 0.1  # an int8 file may differ by 10 % of the largest |logit|: catches broken files only


def parity_inputs(loaded: LoadedModel, dataset: str | None = None, split: str = "test", n: int = 8) -> dict[str, torch.Tensor]:
    """Named input batches: random noise, flat images, and real (or realistic) preprocessed images."""
    import torch

    from deitctl.data.transforms import eval_transform

    c, h = loaded.data_config.channels, loaded.data_config.size
    transform = eval_transform(loaded.data_config)
    gen = torch.Generator().manual_seed(0)
    images = _dataset_images(dataset, split, c, n) if dataset else _synthetic_images(n, h, c)
    mode = "L" if c == 1 else "RGB"
    flat = [_flat_image(v, h, mode) for v in (0, 128, 255)]
    return {
        "random": torch.randn(n, c, h, h, generator=gen),
        "constant": torch.stack([transform(img) for img in flat]),
        "dataset" if dataset else "synthetic": torch.stack([transform(img) for img in images]),
    }


def _flat_image(value: int, size: int, mode: str):
    from PIL import Image

    return Image.new(mode, (size, size), value if mode == "L" else (value,) * 3)


def _synthetic_images(n: int, size: int, channels: int) -> list:
    """Natural-looking test images (smooth gradients and shapes) without any dataset at hand."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    out = []
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        base = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(80, 200)
        arr = np.stack([base + rng.uniform(0, 55) for _ in range(3)], -1).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        draw = ImageDraw.Draw(img)
        x0, y0 = rng.integers(0, size // 2, 2)
        shape = draw.ellipse if i % 2 else draw.rectangle
        shape([int(x0), int(y0), int(x0) + size // 3, int(y0) + size // 3], fill=tuple(rng.integers(0, 255, 3).tolist()))
        out.append(img.convert("L" if channels == 1 else "RGB"))
    return out


def _dataset_images(dataset: str, split: str, channels: int, n: int) -> list:
    from deitctl.data.samples import decode_image
    from deitctl.data.splits import load_split, subset

    part = subset(load_split(dataset, split), n)
    mode = "L" if channels == 1 else "RGB"
    return [decode_image(v, mode, i) for i, v in enumerate(part.dataset[part.image_column])]


def compare(reference: nn.Module, candidate: Runner, inputs: dict[str, torch.Tensor]
            ) -> tuple[dict[str, float], dict[str, float]]:
    """Per input set, the max absolute logit difference, and the same divided by the reference's
    largest absolute logit (each set is also run one sample at a time: batch 1)."""
    import torch

    absolute: dict[str, float] = {}
    relative: dict[str, float] = {}
    with torch.no_grad():
        for name, x in inputs.items():
            want = reference(x).float()
            got = torch.cat([candidate(x[:1]), candidate(x[1:])]).float()  # two batch sizes: dynamic batch works
            if got.shape != want.shape:
                raise DeitctlError(f"exported model returns shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
            diff = (got - want).abs().max()
            absolute[name] = float(diff)
            relative[name] = float(diff / want.abs().max().clamp_min(1e-12))
    return absolute, relative


def check_parity(diffs: dict[str, float], tolerance: float, fmt: str, bound: str | None = None) -> None:
    """Refuse an export that does not reproduce the model (the caller then leaves nothing on disk). ``bound`` names
    a fixed bound (int8's relative one) that the user's ``--tolerance`` does not move."""
    worst = max(diffs, key=diffs.__getitem__, default=None)
    if worst is None or (diffs[worst] <= tolerance and diffs[worst] == diffs[worst]):
        return
    where = f"{fmt} export differs from PyTorch by {diffs[worst]:.3g} on {worst} inputs"
    if bound:
        raise DeitctlError(f"{where} ({bound}): the file does not reproduce the model; nothing was written")
    raise DeitctlError(f"{where} (--tolerance {tolerance:g}); nothing was written — raise --tolerance if this "
                       "difference is acceptable")
