#!/usr/bin/env bash
# (Re)creates .gpu-wheels/: the wheels benchmarks/gpu_check.sh installs on the device machine, which reaches no
# registry. Its image (KINDS.md in the device tool's notes) has Python 3.12 with torch, timm, accelerate,
# transformers, typer, rich, pandas, pyarrow, huggingface-hub and safetensors, but not `datasets` or `pydantic`.
#
#   bash benchmarks/gpu_wheels.sh              # then run the check with carry [".gpu-wheels"]
#
# Carried: datasets and pydantic with everything they need that the image lacks (dill, multiprocess,
# pydantic-core, annotated-types, typing-inspection), plus the ones the image has in a version that may be too
# old or too new for them (pyarrow >= 24, fsspec <= 2026.9.0, typing-extensions >= 4.16, xxhash): pip takes those
# from here only when the image's own do not fit. pyarrow is most of the folder (~55 MB); a carried run may
# bring 64 MiB in all, the working tree included, so the folder must stay under 60 MiB. No torch, ever.
# Versions are the ones deitctl is tested with here (this repo's .venv), or the pins below without one.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DEST=${GPU_WHEELS_DIR:-.gpu-wheels}
PYVER=${GPU_WHEELS_PYTHON:-3.12}  # the device's python3 (3.12.3 when last seen)
LIMIT_MIB=60
PINS=(datasets==5.2.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 fsspec==2026.9.0 pyarrow==26.0.1)

# the same packages at the versions this repo's environment runs (a pin whose package it lacks stays as it is)
specs=()
for pin in "${PINS[@]}"; do
  name=${pin%%==*}
  have=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  specs+=("$name==${have:-${pin#*==}}")
done

tmp="$DEST.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
# --no-deps: the list above is the closure the device needs; resolving here would fetch numpy, pandas, ...
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$tmp" "${specs[@]}"

mib=$(($(du -sb "$tmp" | cut -f1) / 1048576))
if ((mib >= LIMIT_MIB)); then
  echo "$tmp holds $mib MiB, over $LIMIT_MIB MiB: a device run carries 64 MiB in all; left as $tmp" >&2
  exit 1
fi
rm -rf "$DEST"
mv "$tmp" "$DEST"
ls -l "$DEST"
echo "$DEST: $(ls "$DEST" | wc -l) wheels, $mib MiB, for CPython $PYVER on manylinux x86_64"
