"""Is the Hub there? Decided once per endpoint in at most ~1 s (``DEITCTL_HUB_TIMEOUT``), so an offline machine answers at once.

Without this, a command that touches the Hub on a machine without it waits for the client's retries
(36.7 s and 12 warning lines, measured for ``deitctl finetune --dataset cifar100``) before failing.
When the endpoint does not answer, the library call that follows runs with ``huggingface_hub`` and
``datasets`` in offline mode (``cache_only``): what is cached is served, the rest fails at once with
deitctl's one-line error.
``HF_HUB_OFFLINE=1`` skips the probe. Any HTTP answer (even an error status) counts as reachable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache

TIMEOUT_S = float(os.environ.get("DEITCTL_HUB_TIMEOUT", "1.0"))  # the Hub answers a HEAD in ~0.2 s
_QUIET = ("huggingface_hub", "huggingface_hub.utils._http", "datasets", "filelock", "urllib3")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline_requested(datasets: bool = False) -> bool:
    """HF_HUB_OFFLINE set, in the environment or in the client (for ``datasets``: HF_DATASETS_OFFLINE too)."""
    import sys

    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return True
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",)
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in names)


@cache
def reachable(url: str, timeout: float = TIMEOUT_S) -> bool:
    """One HEAD request in a daemon thread (DNS included: ``urlopen``'s timeout does not cover name lookup)."""
    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # it answered, with an error status: the hub is there
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.2)
    return bool(answered and answered[0])


def online(datasets: bool = False) -> bool:
    """True when the hub can be used now (for ``datasets`` downloads: and HF_DATASETS_OFFLINE is unset)."""
    for name in _QUIET:  # the clients' retry chatter is not for the user: deitctl says what happened
        logging.getLogger(name).setLevel(logging.ERROR)
    if offline_requested(datasets):
        return False
    return endpoint().startswith("file://") or reachable(endpoint())


@contextlib.contextmanager
def cache_only(active: bool = True) -> Iterator[None]:
    """Within the block, ``huggingface_hub`` and ``datasets`` serve their caches and never ask the network
    (set when ``online()`` said no): a cached model or dataset loads, the rest fails at once."""
    if not active:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE"))
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[2]
