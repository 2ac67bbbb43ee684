"""One writer at a time: an advisory lock on a directory (a run directory, a hub branch).

The lock is ``flock`` on a small file that also says who holds it (pid, host, since when, what for),
so a refusal can name the holder. The kernel releases a flock when its holder dies, SIGKILL
included; a lock whose holder is gone but whose file is still held (by a forked worker that outlived
it) is detected by pid on the same host, and taken over with a fresh file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from deitctl.core.errors import UsageError

POLL_S = 0.05


class InUseError(UsageError):
    """Someone else holds the lock (exit code 2: the command was not wrong, but cannot run now)."""


class FileLock:
    """``with FileLock(path, "deitctl train"):`` — exclusive, advisory; released on exit of the block or the process."""

    def __init__(self, path: str | os.PathLike, purpose: str, label: str | None = None) -> None:
        self.path, self.purpose = Path(path), purpose
        self.label = label or str(self.path.parent)  # how messages name the locked thing
        self._fd: int | None = None

    # ----------------------------------------------------------------------------------- holding
    def acquire(self, timeout: float = 0.0) -> FileLock:
        """Take the lock, waiting up to ``timeout`` seconds; raise :class:`InUseError` naming the holder."""
        deadline = time.monotonic() + timeout
        while True:
            if self._try():
                return self
            holder = self.holder()
            if holder and _dead_here(holder):
                self.path.unlink(missing_ok=True)  # a dead process's lock, kept by a straggler: a new file
                continue
            if time.monotonic() >= deadline:
                raise InUseError(self._busy_message(holder))
            time.sleep(POLL_S)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the flock goes with the descriptor; the file stays, harmless
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if os.fstat(fd).st_ino != _inode(self.path):  # the file was replaced while we waited: take the new one
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "purpose": self.purpose}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return True

    # ----------------------------------------------------------------------------------- reading
    def holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _busy_message(self, holder: dict[str, Any] | None) -> str:
        if not holder:
            return f"{self.label} is in use by another process; wait for it to finish, then try again"
        return (f"{self.label} is in use by pid {holder.get('pid')} on {holder.get('host')} since "
                f"{holder.get('since')} ({holder.get('purpose')}); wait for it to finish or stop it, then try again")


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _dead_here(holder: dict[str, Any]) -> bool:
    """The holder ran on this host and its process no longer exists."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
