#!/usr/bin/env bash
# The GPU check (issue 28, item 5): one command on a bare CUDA machine, at most ~8 minutes, every figure under $OUT.
#
#   device run:  command "bash benchmarks/gpu_check.sh", carry [".gpu-wheels"], timeout_s 540
#   here:        GPU_CHECK_DRY=cpu bash benchmarks/gpu_check.sh      # every part on the CPU at toy sizes
#
# The device's python3 has torch, timm, accelerate and transformers but not `datasets` or `pydantic`: they come
# from .gpu-wheels (made by benchmarks/gpu_wheels.sh; the device reaches no registry), deitctl itself from this
# tree through PYTHONPATH (an editable install would need hatchling, which is not there either).
#
# Parts, cheapest and most binary first, each under its own `timeout`, all under GPU_CHECK_BUDGET_S:
#   env     GPU, versions, pyproject requirements the image does not meet         -> env.json
#   (d)     CPU vs GPU fp32 logits of DeiT-Ti through deitctl's Predictor, TF32 off -> parity.json
#   (c)     a synthetic image folder; `deitctl train` a RegNetY teacher 2 epochs, `deitctl train deit-ti-distilled`
#           2 epochs distilling from it, `deitctl eval`; exit codes asserted (uncompiled: (a) and (b) run
#           the compiled paths, and a cold compile here would cost (a) half a minute)  -> e2e.json
#   (a)     deitctl bench rows, DeiT-Ti/S/B and B↑384, batch 256 and 1, bf16 and fp32, compiled
#                                                                                   -> table10.jsonl
#   cli     `deitctl bench --json` itself, eager (the CLI path on CUDA)              -> bench_cli.json
#   (b)     training img/s of DeiT-Ti⚗/S⚗/B⚗ + RegNetY-16GF teacher: deitctl vs a plain timm AMP loop -> train.json
# then summary.md (every table, the paper's figures beside them) and gpu_check.log: 8 files, the most that
# come back from a device run. A part that fails or times out is recorded and the next one still runs; the
# script exits 1 if any part failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DRY=${GPU_CHECK_DRY:-}
OUT=${OUT:-$REPO/out/gpu-check}  # /out/ is git-ignored: a local run leaves nothing to commit or to carry
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
if [[ -n "$DRY" && -z "${GPU_CHECK_PYTHON:-}" && -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=${GPU_CHECK_PYTHON:-python3}
fi
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export DEITCTL_CACHE="$WORK/cache" HF_HOME="$WORK/hf"
DEITCTL=("$PY" -m deitctl.cli)
DATA="$WORK/data"
STATUS="$WORK/status.tsv"
: >"$STATUS"
FAILED=()
START=$SECONDS

# Sizes: the device's, or toys that prove the plumbing on a CPU in a minute or two (GPU_CHECK_DRY=cpu).
if [[ "$DRY" == cpu ]]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  PARITY=(--device cpu --img-size 64 --batch 2)
  FOLDER=(--classes 10 --train 4 --val 2 --size 32)
  E2E=(--epochs 2 --batch-size 8 --set img_size=32 --set num_workers=1 --set warmup_epochs=0)
  TABLE10=(--models deit_tiny_patch16_224 --batch-sizes 2 --precisions fp32 --no-compile --repeats 1)
  TRAIN=(--students ti --teacher regnety_002 --img-size 32 --batch-size 2 --steps 1 --windows 1)
  CLI=(deit_tiny_patch16_224 --batch-sizes 2 --precision fp32 --repeats 1)
elif [[ -z "$DRY" ]]; then
  PARITY=(--device cuda)
  FOLDER=(--classes 10 --train 48 --val 8 --size 64)
  E2E=(--epochs 2 --batch-size 64 --set warmup_epochs=0 --no-compile)  # compiled paths: (a) and (b)
  TABLE10=()
  TRAIN=()
  CLI=(deit_tiny_patch16_224 --batch-sizes 256 --precision bf16 --repeats 3)
else
  echo "GPU_CHECK_DRY=$DRY: only 'cpu' (or unset, on a GPU) is known" >&2
  exit 2
fi

left() { echo $((BUDGET - (SECONDS - START))); }

# part NAME LIMIT_S [RESERVE_S] -- CMD...: run CMD under `timeout`, at most LIMIT_S and never into the RESERVE_S
# seconds kept for the parts after it; record "NAME EXIT SECONDS LIMIT" and WORK/NAME.rc. Banners go to stderr,
# so a part's stdout can be its JSON.
part() {
  local name=$1 limit=$2 reserve=0
  shift 2
  if [[ $1 != -- ]]; then reserve=$1; shift; fi
  shift
  local room=$(($(left) - reserve))
  ((limit > room)) && limit=$room
  if ((limit < 10)); then
    echo "=== $name: skipped, $(left) s of the budget left" >&2
    echo "$name skipped 0 —" >>"$STATUS"
    FAILED+=("$name")
    return 0
  fi
  echo "=== $name (limit ${limit} s, $(left) s of the budget left)" >&2
  local t0=$SECONDS rc=0
  timeout --kill-after=15 "$limit" "$@" || rc=$?
  echo "$rc" >"$WORK/$name.rc"
  echo "$name $rc $((SECONDS - t0)) $limit" >>"$STATUS"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s$( ((rc == 124)) && echo ' (timed out)')" >&2
  ((rc == 0)) || FAILED+=("$name")
  return 0
}

install_wheels() {
  # pyproject's own bounds for the two packages the image lacks; pip keeps every installed package that already
  # satisfies them and takes only what is missing or too old from the folder
  local reqs
  read -ra reqs <<<"$("$PY" -c 'import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.split(r"[<>=!~ ;\[]", d)[0] in ("datasets", "pydantic")))')"
  echo "installing ${reqs[*]} from .gpu-wheels" >&2
  if ! "$PY" -m pip install -q --no-index --find-links .gpu-wheels --no-cache-dir --disable-pip-version-check \
      "${reqs[@]}"; then
    # the resolver could not fit them to the image's packages: take every carried wheel as it is, beside them
    echo "resolver failed; every carried wheel goes to $WORK/site (--no-deps), first on PYTHONPATH" >&2
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --target "$WORK/site" .gpu-wheels/*.whl
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
  fi
}

echo "GPU check: repo $REPO, out $OUT, work $WORK, python $PY, budget ${BUDGET} s${DRY:+, dry run on the $DRY}"
if [[ -d .gpu-wheels && -z "$DRY" ]] || [[ "${GPU_CHECK_INSTALL:-}" == 1 ]]; then
  install_wheels
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
  --format=csv || true

part env 45 -- "$PY" benchmarks/gpu_parts.py env --out "$OUT"
if [[ "$(cat "$WORK/env.rc")" != 0 ]]; then
  echo "the environment is not usable (see env.json's import_errors); nothing else can run" >&2
  exit 1
fi
part parity 60 -- "$PY" benchmarks/gpu_parts.py parity --out "$OUT" "${PARITY[@]}"
part folder 30 -- "$PY" benchmarks/gpu_parts.py folder "$DATA" "${FOLDER[@]}"

# (c) two epochs of distillation through the real CLI, 224 px, the DeiT-Ti⚗ recipe's augmentation; the teacher is
# a RegNetY (timm's regnety_002) trained first on the same folder. RESERVE 240: (a) and (b) keep at least that
part teacher 75 240 -- "${DEITCTL[@]}" train deit-ti --dataset "$DATA" --set model=regnety_002 --set lr=4e-3 \
  "${E2E[@]}" --out "$WORK/teacher" --json >"$WORK/teacher.json"
part student 90 240 -- "${DEITCTL[@]}" train deit-ti-distilled --dataset "$DATA" --teacher "$WORK/teacher" \
  "${E2E[@]}" --out "$WORK/student" --json >"$WORK/student.json"
part eval 40 240 -- "${DEITCTL[@]}" eval "$WORK/student" --dataset "$DATA" --json >"$WORK/eval.json"
"$PY" benchmarks/gpu_parts.py e2e --work "$WORK" --out "$OUT" || FAILED+=(e2e)

# (a) the bench rows get what is left after keeping (b)'s share; each script also stops starting rows/students
# that would overrun its own budget, so a timeout rarely has to cut one short
reserve_b=150
budget_a=$(($(left) - reserve_b - 45))
part table10 $((budget_a + 20)) "$reserve_b" -- "$PY" benchmarks/gpu_table10.py --out "$OUT" \
  --budget-s "$budget_a" "${TABLE10[@]}"
part cli 30 "$reserve_b" -- "${DEITCTL[@]}" bench "${CLI[@]}" --json >"$OUT/bench_cli.json"
budget_b=$(($(left) - 45))
part train $((budget_b + 25)) 15 -- "$PY" benchmarks/gpu_train_check.py --folder "$DATA" --work "$WORK/train" \
  --out "$OUT" --budget-s "$budget_b" "${TRAIN[@]}"

"$PY" benchmarks/gpu_parts.py summary --out "$OUT" --status "$STATUS" >/dev/null || FAILED+=(summary)
cat "$OUT/summary.md" 2>/dev/null || true
echo "GPU check done in $((SECONDS - START)) s; failed: ${FAILED[*]:-none}; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
((${#FAILED[@]} == 0))
