#!/usr/bin/env bash
# Install deitctl with every extra, then run the checks CI runs: ruff, the test suite, the docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
DEITCTL_EXTRAS="dev,onnx,transformers,docs,int8" bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/ruff check deitctl tests benchmarks scripts docs
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
if [ -f mkdocs.yml ]; then NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d /tmp/deitctl-site; fi
