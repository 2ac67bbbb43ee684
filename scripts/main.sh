#!/usr/bin/env bash
# The main job on the embedded default (the real Fashion-MNIST, CPU, offline): the paper's Table 3 at
# laptop scale. A convnet teacher, then the same DeiT student four ways at equal budget — no distillation,
# usual (soft) and hard distillation on the class token, and DeiT⚗ (hard distillation through the
# distillation token) — all trained on the same images; every model evaluated with `deitctl eval --save`,
# then `deitctl report`: Table 3 beside the paper's, exact McNemar tests against no distillation, the
# Table 4 disagreement matrix, curves and attention maps (runs/main/report.md, runs/main/report.json).
#
#   bash scripts/main.sh            # quick budget: 20,000 images, ≈ 15 min on a 2-core CPU (+ set-up)
#   bash scripts/main.sh --full     # all 60,000 training images, longer schedules
#
# Environment: OUT (default runs/main, runs/main-full), SEED (default 0), SKIP_SETUP=1 (use the current
# environment), CURVE_SAMPLES (test images for the per-epoch curves, 2000), and for smoke tests TRAIN_SAMPLES,
# TEACHER_EPOCHS, STUDENT_EPOCHS, EVAL_SAMPLES, EXTRA_TEACHER, EXTRA_STUDENT (extra `deitctl train` arguments, split on spaces).
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
[ "${1:-}" = "--full" ] && full=1

stamp() { date +%s; }
t_start=$(stamp)
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup.sh
  export PATH="$PWD/.venv/bin:$PATH"
fi
t_setup=$(stamp)
seed="${SEED:-0}"

# The machine class decides the speed levers (deitctl/runtime/rules.py) and so the wall time: say both first.
read -r cpu_class cpu_model < <(python -c "from deitctl.runtime.hardware import cpu; c = cpu(); print(c.kind, c.model)")
case "$cpu_class${1:-}" in  # wall times of this script on 2 cores, set-up skipped (docs/laptop.md, docs/performance.md)
  avx512-bf16) expect="about 15 min (measured 14.2 and 15.5 min on an AMD EPYC Zen 5)" ;;
  avx2) expect="about 24 min (24.2 and 24.3 min measured on an AMD EPYC Zen 3; bf16 is emulated there: every model trains in fp32);
    TRAIN_SAMPLES=10000 halves the images: 13.6 min measured, every arm 1.3-4.5 points lower, the same ranking" ;;
  *--full) expect="about 56 min on AVX512-BF16 (the --full budget); other classes not measured" ;;
  *) expect="not measured on this class (about 15 min on AVX512-BF16, 24 min on AVX2)" ;;
esac
echo "main.sh: CPU class $cpu_class ($cpu_model), $(nproc) cores; expected wall time: $expect" >&2

if [ $full = 1 ]; then
  OUT="${OUT:-runs/main-full}"
  samples="${TRAIN_SAMPLES:-60000}"; teacher_epochs="${TEACHER_EPOCHS:-15}"; student_epochs="${STUDENT_EPOCHS:-20}"
else
  OUT="${OUT:-runs/main}"
  samples="${TRAIN_SAMPLES:-20000}"; teacher_epochs="${TEACHER_EPOCHS:-12}"; student_epochs="${STUDENT_EPOCHS:-15}"
fi
# The same images for every model (a seeded subset), the same schedule and seed for every student.
# Per-epoch curves on 2,000 test images (fast); the reported figures are `deitctl eval` on all 10,000.
common=(--max-train-samples "$samples" --max-eval-samples "${CURVE_SAMPLES:-2000}" --set seed="$seed" --overwrite)
read -r -a extra_teacher <<< "${EXTRA_TEACHER:-}"
read -r -a extra_student <<< "${EXTRA_STUDENT:-}"
eval_flags=(--save --json)
[ -n "${EVAL_SAMPLES:-}" ] && eval_flags+=(--max-samples "$EVAL_SAMPLES")

mkdir -p "$OUT"
timings="$OUT/timings.tsv"
printf 'stage\tseconds\n' > "$timings"
printf 'setup\t%s\n' "$((t_setup - t_start))" >> "$timings"

run_stage() {  # run_stage NAME COMMAND...: run, time, record
  local name=$1; shift
  local t0; t0=$(stamp)
  echo "== $name: $*" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$(($(stamp) - t0))" >> "$timings"
}

teacher="$OUT/fashion-teacher"
train_teacher() {
  deitctl train fashion-teacher --out "$teacher" --epochs "$teacher_epochs" "${common[@]}" \
    ${extra_teacher[@]+"${extra_teacher[@]}"}
}
train_student() {  # train_student RECIPE: the student recipe on the common images, taught by $teacher unless "none"
  # Every distilled student sees the same augmented batches, so the teacher's outputs are computed once and
  # stored (teacher_store, docs/distillation.md); the soft student takes its teacher in fp32 as the hard ones do
  # (on bf16 hardware it would run in bf16 and get outputs of its own): one teacher signal for all three.
  local teacher_flag=()
  [ "$1" != fashion-deit-ti ] && teacher_flag=(--teacher "$teacher" --set teacher_precision=fp32)
  deitctl train "$1" --out "$OUT/$1" --epochs "$student_epochs" "${common[@]}" \
    "${teacher_flag[@]+"${teacher_flag[@]}"}" ${extra_student[@]+"${extra_student[@]}"}
}
failed() {  # failed NAME: say which stage failed and show the end of its log
  echo "main.sh: $1 failed; its log: $OUT/$1.log" >&2; tail -5 "$OUT/$1.log" >&2
}
pair() {  # pair NAME_A CMD_A NAME_B CMD_B: two small models side by side, one core each. On 2 cores this
  # stepped 1.39-1.65x more images per second than one run on both (small matmuls scale poorly across threads).
  local a=$1 ca=$2 b=$3 cb=$4
  OMP_NUM_THREADS=1 run_stage "$a" $ca > "$OUT/$a.log" 2>&1 & local pa=$!
  OMP_NUM_THREADS=1 run_stage "$b" $cb > "$OUT/$b.log" 2>&1 & local pb=$!
  local ok=1
  wait "$pa" || { ok=0; failed "$a"; }
  wait "$pb" || { ok=0; failed "$b"; }
  [ $ok = 1 ] || exit 1
  grep -h "^epoch .*/\|^fashion" "$OUT/$a.log" "$OUT/$b.log" | tail -4 >&2 || true
}
alone() {  # alone NAME CMD: one run on both cores (in the background and waited for, as in a pair: run_stage
  # called on the left of || would run with set -e off and hide a failure)
  OMP_NUM_THREADS=2 run_stage "$1" $2 > "$OUT/$1.log" 2>&1 & local pid=$!
  wait "$pid" || { failed "$1"; exit 1; }
  grep -h "^epoch .*/\|^fashion" "$OUT/$1.log" | tail -2 >&2 || true
}
students=(fashion-deit-ti fashion-deit-ti-soft fashion-deit-ti-hard fashion-deit-ti-distilled)
# The student without distillation needs no teacher: it trains beside the teacher.
pair teacher train_teacher fashion-deit-ti "train_student fashion-deit-ti"
# The distilled students see the same augmented batches. Two started together would both compute every teacher
# output (each reaches a chunk before the other has written it), so one runs first, on both cores, and stores
# them; the other two then train side by side and read them all.
alone fashion-deit-ti-hard "train_student fashion-deit-ti-hard"
pair fashion-deit-ti-distilled "train_student fashion-deit-ti-distilled" \
  fashion-deit-ti-soft "train_student fashion-deit-ti-soft"
evaluate() {  # evaluate RUN...: deitctl eval --save each (per-image predictions for the paired statistics)
  for run in "$@"; do deitctl eval "$OUT/$run" "${eval_flags[@]}" > /dev/null; done
}
OMP_NUM_THREADS=2 run_stage eval evaluate fashion-teacher "${students[@]}"
run_stage report deitctl report "$teacher" "${students[@]/#/$OUT/}" --out "$OUT/report.md" --attention-images 4 \
  > /dev/null
printf 'total\t%s\n' "$(($(stamp) - t_start))" >> "$timings"

echo
cat "$OUT/report.md"
echo
echo "Stage wall times (seconds):"
column -t -s $'\t' "$timings"
