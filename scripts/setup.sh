#!/usr/bin/env bash
# Set up deitctl on a fresh Debian machine: the Fashion-MNIST package (the offline default data),
# uv, and a virtual environment in .venv with deitctl and the extras named in $DEITCTL_EXTRAS.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${DEITCTL_EXTRAS:-}"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "warning: could not install dataset-fashion-mnist; deitctl will fall back to the Hub copy" >&2
  fi
fi
command -v uv >/dev/null || python3 -m pip install -q uv
[ -x .venv/bin/python ] || uv venv -q .venv
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
uv pip install -q --compile-bytecode -p .venv/bin/python -e "$spec"
