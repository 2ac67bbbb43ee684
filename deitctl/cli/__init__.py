"""The ``deitctl`` command line: it parses arguments, calls ``deitctl.app``, and renders the result.

One module per group of commands (``training``, ``models``, ``hub``, ``records``), all registered on
the Typer app of ``base``. Only typer/rich are imported at module level so ``deitctl --help`` stays fast.
"""

from __future__ import annotations

import sys

from deitctl.cli import demo, hub, models, records, training  # noqa: F401  (each registers its commands)
from deitctl.cli.base import app, state
from deitctl.core.atomic import is_disk_full
from deitctl.core.errors import DeitctlError, unwrap_worker_message

__all__ = ["app", "main"]


def _one_line(error: BaseException) -> str:
    """The message of an error, on one line — also when torch re-raised it from a DataLoader worker."""
    return " ".join(unwrap_worker_message(str(error).strip()).split())


def main() -> None:
    """Console entry point: user errors become one line and an exit code, not a traceback."""
    try:
        app()
    except DeitctlError as e:
        if state["debug"]:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug, not bad input: still no wall of text unless asked
        if state["debug"]:
            raise
        if is_disk_full(e):  # a write no guard named: still one line that says what happened
            print(f"error: no space left on the device ({_one_line(e)}); free some space and run again",
                  file=sys.stderr)
            sys.exit(1)
        print(f"error: {type(e).__name__}: {_one_line(e)} (re-run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
