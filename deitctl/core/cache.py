"""Where deitctl keeps what it can rebuild: ``$DEITCTL_CACHE``, else ``$XDG_CACHE_HOME/deitctl`` (~/.cache/deitctl)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    base = os.environ.get("DEITCTL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "deitctl")
    return Path(base)
