"""Samples as the model sees them: image bytes decoded by us, in DataLoader workers, then transformed.

Decoding ourselves (the split's image column is cast to ``Image(decode=False)`` by ``data.load_split``)
means a corrupt or unreadable image fails the run with the file — or the split and index — named,
instead of a bare PIL traceback mid-epoch. See ``deitctl.data.sources`` for why we fail rather than skip.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deitctl.data.splits import LabeledSplit


class UnreadableImageError(DeitctlError):
    """A sample whose image cannot be decoded; the message names the file (or the split and index).

    Raised in a DataLoader worker, it still reads as one line: ``DeitctlError`` drops the worker
    traceback torch wraps around the message.
    """


def decode_image(value: dict[str, Any], mode: str | None, index: Any = None, where: str | None = None):
    """PIL image from a datasets ``Image(decode=False)`` value, converted to ``mode`` ("L", "RGB"; None: as is).

    ``index`` and ``where`` (e.g. ``"cifar10[train]"``) only name the sample in the error message;
    embedded images (parquet, arrow, Hub) often have no file path of their own.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    path, data = value.get("path"), value.get("bytes")
    try:
        img = _netpbm(data) if data and data[:2] in (b"P5", b"P6") else None
        if img is None:
            img = Image.open(io.BytesIO(data)) if data else Image.open(path)
            img.load()
        return img if mode in (None, img.mode) else img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UnreadableImageError(f"unreadable image {_sample_name(path, bool(data), index, where)} "
                                   f"({type(e).__name__}: {e}); "
                                   "remove or replace the file and run again") from None


def _sample_name(path: str | None, embedded: bool, index: Any, where: str | None) -> str:
    """A file on disk is named by its path; an embedded image also by its index in the split."""
    sample = " of ".join(str(p) for p in (f"sample {index}" if index is not None else None, where) if p)
    if path and (not embedded or not sample):
        return path
    return f"{path} ({sample})" if path else sample or "a sample"


_NETPBM_HEADER = re.compile(rb"P([56])\s+(\d+)\s+(\d+)\s+255\s")


def _netpbm(data: bytes):
    """Binary 8-bit PGM/PPM without PIL's format probing (~5 µs vs ~30 µs for a tiny PNG); None if unusual."""
    from PIL import Image

    header = _NETPBM_HEADER.match(data)
    if header is None:
        return None
    mode = "L" if header[1] == b"5" else "RGB"
    return Image.frombytes(mode, (int(header[2]), int(header[3])), data[header.end() :])


class TransformedSplit:
    """A map-style dataset over a split yielding ``{"x": tensor, "y": int}``, decoded and augmented lazily.

    ``__getitems__`` (which torch's DataLoader calls with a whole batch of indices) reads the batch
    from Arrow in one call instead of one call per sample.
    """

    def __init__(self, split: LabeledSplit, transform: Callable, channels: int) -> None:
        self.dataset = split.dataset.select_columns([split.image_column, split.label_column])
        self.image_column, self.label_column = split.image_column, split.label_column
        self.where = f"{split.name}[{split.split}]"
        self.transform = transform
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sample(*self.rows([index])[0])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self.sample(*r) for r in self.rows(indices)]

    def rows(self, indices: Sequence[int]) -> list[tuple[int, dict[str, Any], int]]:
        """(index, encoded image, label) for many samples, read from Arrow in one call."""
        rows = self.dataset[list(indices)]
        return list(zip(indices, rows[self.image_column], rows[self.label_column], strict=True))

    def sample(self, index: int, image: dict[str, Any], label: int,
               decoded: dict[int, Any] | None = None) -> dict[str, Any]:
        """``decoded``: images already decoded for this batch, by index (repeated augmentation's copies of a sample
        decode once; PIL's transforms return new images, so each copy is augmented from the same pixels)."""
        img = decoded.get(index) if decoded is not None else None
        if img is None:
            img = decode_image(image, self.mode, index, self.where)
            if decoded is not None:
                decoded[index] = img
        return {"x": self.transform(img), "y": int(label)}


def with_transform(split: LabeledSplit, transform: Callable, channels: int) -> TransformedSplit:
    """The split as a map-style dataset yielding ``{"x": tensor, "y": int}``, transformed lazily in workers."""
    return TransformedSplit(split, transform, channels)


def collate(batch: list[dict[str, Any]]):
    """(images, labels) tensors from ``with_transform`` samples.

    torch's ``default_collate`` stacks straight into shared memory when it runs in a DataLoader
    worker; a plain ``torch.stack`` would make the batch be copied again to cross to the main
    process (~25% of a worker's time for 224 px batches).
    """
    import torch
    from torch.utils.data import default_collate

    return default_collate([b["x"] for b in batch]), torch.tensor([b["y"] for b in batch], dtype=torch.long)
