"""Atomic, durable file and directory writes: a crash never leaves a half-written file under the final name,
and a full disk says so in one line.

Every write goes to a temporary name beside its target and is renamed over it only once complete.
``durable=True`` also fsyncs the file and its directory, so after a power cut or a SIGKILL the rename
is either on disk with its complete content or not at all (checkpoints use it). A write that runs out of
space (ENOSPC, EDQUOT — or torch's serializer, which reports it as a RuntimeError) raises
:class:`DiskFullError` naming the path, the bytes needed and the bytes free; the temporary file is
removed and the previous file is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deitctl.core.errors import DeitctlError, UsageError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(DeitctlError):
    """Out of space while writing: the previous complete file or checkpoint is kept (exit code 1)."""


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory, deepest first."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(os.path.join(directory, name))
        fsync_path(directory)


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    text = str(error)  # torch.save / safetensors report a short write without an errno
    return isinstance(error, RuntimeError) and ("unexpected pos" in text or "No space left" in text
                                                or "file write failed" in text)


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


@contextlib.contextmanager
def disk_full_guard(target: str | os.PathLike, needed: int | None = None, partial: Path | None = None,
                    hint: str = "free some space and run the command again") -> Iterator[None]:
    """Turn running out of space inside the block into one line: where, how much is needed, how much is free.

    ``needed`` is the size of what is being written; unknown, it is at least what ``partial`` already holds.
    """
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not is_disk_full(e):
            raise
        where = Path(target)
        existing = next((p for p in (where, *where.parents) if p.exists()), Path("/"))
        written = tree_size(partial) if partial is not None else 0  # removed with the temporary files
        free = shutil.disk_usage(existing).free + written
        size = needed if needed is not None else written or None
        need = f"needs {_size(size)}" if needed is not None else f"needs more than {_size(size)}" if size else "needs more"
        raise DiskFullError(f"no space left on the device writing {where}: it {need}, {_size(free)} free; "
                            f"{hint}") from None


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, durable: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # what open() would give: mkstemp's 0600 hides a run from its other readers
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_full_guard(final, needed, tmp_path):
            yield tmp_path
            if durable:
                fsync_path(tmp_path)
            os.replace(tmp_path, final)
            if durable:
                fsync_path(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    data = text.encode()
    with atomic_path(path, durable, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    with atomic_path(path, durable, needed=len(data)) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it into place when the block succeeds.

    An existing ``final`` is only replaced when ``overwrite`` is set, and then only after the new
    one is complete, so a failed export never destroys the previous good one.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise UsageError(f"{final} already exists; choose another --out or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # as mkdir would: mkdtemp's 0700 hides it from its other readers
    try:
        try:
            with disk_full_guard(final, partial=tmp):
                yield tmp
        except DiskFullError as e:  # a file inside: name it where the user will look for it
            raise DiskFullError(str(e).replace(str(tmp), str(final))) from None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
