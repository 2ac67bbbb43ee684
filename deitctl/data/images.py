"""Image files a user points at: paths and directories (walked), decoded and preprocessed as eval does.

Decoding happens in DataLoader workers; a file that is not a readable image is reported, not fatal:
``predict`` names it in a warning, skips it and counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from deitctl.core.errors import UsageError


def collect(paths: Sequence[Path]) -> list[Path]:
    """Every file named, and every file under every directory named (sorted), in order; missing paths refused."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such image or directory; check the path")
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)
    if not files:
        raise UsageError(f"no files under {', '.join(map(str, paths))}; pass images or folders of images")
    return files


class ImageFiles:
    """A map-style dataset over files: ``(tensor or None, index, error or None)`` per file."""

    def __init__(self, files: Sequence[Path], transform: Callable, channels: int) -> None:
        self.files, self.transform, self.mode = list(files), transform, "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int, str | None]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[index]) as img:
                img.load()
                return self.transform(img.convert(self.mode)), index, None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            return None, index, f"{type(e).__name__}: {e}"


def _collate(batch: list[tuple[Any, int, str | None]]) -> tuple[Any, list[int], list[tuple[int, str]]]:
    import torch

    good = [(x, i) for x, i, err in batch if err is None]
    bad = [(i, err) for x, i, err in batch if err is not None]
    images = torch.stack([x for x, _ in good]) if good else None
    return images, [i for _, i in good], bad


def batches(files: Sequence[Path], transform: Callable, channels: int, batch_size: int,
            num_workers: int) -> Iterator[tuple[Any, list[int], list[tuple[int, str]]]]:
    """(images, their indices into ``files``, [(index, why it is unreadable)]) per batch, in order."""
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")
    loader = DataLoader(ImageFiles(files, transform, channels), batch_size=batch_size, shuffle=False,
                        num_workers=min(num_workers, len(files) // batch_size + 1), collate_fn=_collate)
    yield from loader


MAX_PIXELS = 40_000_000  # one image decoded for a person (the demo): at most 120 MB as RGB


def open_bounded(path: Path, mode: str, max_pixels: int = MAX_PIXELS) -> tuple[Any, list[str]]:
    """One image a person hands over, decoded in ``mode`` ("L" or "RGB") with bounded memory, and notes on what was
    done to it. Its size is read from the header first: a JPEG larger than ``max_pixels`` decodes at 1/2, 1/4 or 1/8
    scale (what its format allows for free), any other image that large is refused before it is decoded — so is
    anything that is not an image. Refusals are ``UsageError``s worded for the person."""
    import math
    import warnings

    from PIL import Image, UnidentifiedImageError

    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours, and lower
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels and img.format == "JPEG":
                    shrink = 2 ** math.ceil(math.log2(math.sqrt(width * height / max_pixels)))  # draft: 2, 4 or 8
                    img.draft(mode, (math.ceil(width / shrink), math.ceil(height / shrink)))
                    if img.size != (width, height):
                        notes.append(f"decoded at {img.size[0]}×{img.size[1]} from {width}×{height} pixels (JPEG "
                                     "scaling): the model sees a resized image anyway")
                if img.size[0] * img.size[1] > max_pixels:
                    raise UsageError(f"the image is {width}×{height} pixels, more than the {max_pixels / 1e6:.0f} "
                                     "megapixels decoded here; send a smaller copy (the model sees a resized image)")
                img.load()
                if img.mode != mode:
                    notes.append(f"converted from {img.mode} to {mode}: the model takes "
                                 f"{'grayscale' if mode == 'L' else 'RGB'} images")
                return img.convert(mode), notes
    except UnidentifiedImageError:
        raise UsageError(f"{path.name} is not an image this demo can read (PNG, JPEG, WebP, GIF, BMP, TIFF, …)") from None
    except Image.DecompressionBombError as e:
        raise UsageError(f"refused to decode {path.name}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise UsageError(f"{path.name} could not be decoded ({type(e).__name__}: {e})") from None
