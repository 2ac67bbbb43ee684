#!/usr/bin/env bash
# Install deitctl with every extra, then run the checks CI runs: ruff, the test suite, the docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
DEITCTL_EXTRAS="dev,onnx,transformers,docs,int8,demo,mlflow" bash scripts/setup.sh
# the browser test of `deitctl demo` (tests/test_demo.py) drives Debian's Chromium; where it cannot be installed,
# that test is skipped and says why
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi  # -n: never wait for a password
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/ruff check deitctl tests benchmarks scripts docs
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" --durations=15 "$@"  # the slowest: the suite must stay < 15 min
if [ -f mkdocs.yml ]; then NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d /tmp/deitctl-site; fi
