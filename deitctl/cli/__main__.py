"""``python -m deitctl.cli`` (what ``accelerate launch -m`` and ``torchrun -m`` run)."""

from deitctl.cli import main

main()
