"""Errors a user can act on.

The CLI turns these into one line on stderr and an exit code, never a traceback (unless --debug).
Library code raises them with a message that names the problem *and* the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class DeitctlError(Exception):
    """Something went wrong that the user can understand; exit code 1."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(unwrap_worker_message(message) if isinstance(message, str) else message, *args)


def unwrap_worker_message(message: str) -> str:
    """The original message of an exception torch re-raised from a DataLoader worker.

    torch re-raises it as the same class with the text "Caught X in DataLoader worker process N.\n
    Original Traceback …\nmodule.X: <message>"; the user should read only ``<message>``.
    """
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and re.fullmatch(r"[\w.]+", head) else last


class UsageError(DeitctlError):
    """Bad input from the user (names, files, values); exit code 2."""

    exit_code = 2


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Suffix like " (did you mean: a, b?)" — empty when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
