#!/usr/bin/env bash
# Transfer learning at laptop scale (the paper's Table 7 question on a CPU): does a DeiT⚗ trained on one dataset
# fine-tune to another better than the same student trained from scratch on the same images and budget — and does
# "keep distilling while fine-tuning" (a teacher fine-tuned on the new data) help either?
#
# Needs the main job's runs (bash scripts/main.sh: runs/main/fashion-teacher and fashion-deit-ti-distilled) and the
# `transfer` extra (scikit-learn: its handwritten digits, 1,797 real 8×8 scans shipped offline; 1,437 train / 360
# test, upscaled to the student's 28 px). Per seed, all with the same recipe, images, epochs and batch:
#   teacher       the main job's convnet teacher fine-tuned on the digits
#   scratch       the DeiT⚗ student from random weights, no teacher (both heads learn the labels)
#   scratch-kd    the same, hard distillation through the distillation token from that teacher
#   finetuned     the main job's DeiT⚗ fine-tuned, no teacher
#   finetuned-kd  the same, distilling from that teacher while fine-tuning
# each evaluated with `deitctl eval --save` and compared by `deitctl report` (exact McNemar tests on the 360
# test images): runs/transfer/seed-N/report.md; all seeds with the comparisons' p-values (scripts/transfer_table.py):
# runs/transfer/summary.md. Environment: MAIN (runs/main), OUT (runs/transfer),
# SEEDS ("0 1 2"), EPOCHS (40), SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  DEITCTL_EXTRAS="transfer" bash scripts/setup.sh
fi
export PATH="$PWD/.venv/bin:$PATH"
MAIN="${MAIN:-runs/main}"
OUT="${OUT:-runs/transfer}"
epochs="${EPOCHS:-40}"
for run in fashion-teacher fashion-deit-ti-distilled; do
  [ -f "$MAIN/$run/model.safetensors" ] || { echo "transfer.sh: no $MAIN/$run; run bash scripts/main.sh first" >&2; exit 2; }
done
data="$OUT/digits"
[ -d "$data" ] || python scripts/digits.py "$data"

pids=()
side_by_side() {  # side_by_side LOG COMMAND...: small runs two at a time, one core each (as scripts/main.sh does)
  local log=$1; shift
  OMP_NUM_THREADS=1 "$@" > "$log" 2>&1 &
  pids+=($!)
}
join() {  # wait for the runs started side by side; stop if one failed
  for pid in "${pids[@]}"; do wait "$pid" || { echo "transfer.sh: a run failed; see $dir/*.log" >&2; exit 1; }; done
  pids=()
}

for seed in ${SEEDS:-0 1 2}; do
  dir="$OUT/seed-$seed"
  mkdir -p "$dir"
  common=(--dataset "$data" --epochs "$epochs" --set seed="$seed" --overwrite)
  student=(fashion-deit-ti-distilled "${common[@]}")
  echo "== seed $seed: teacher fine-tuned on the digits, the student from scratch" >&2
  side_by_side "$dir/teacher.log" deitctl finetune fashion-teacher --from "$MAIN/fashion-teacher" \
    --out "$dir/teacher" "${common[@]}"
  side_by_side "$dir/scratch.log" deitctl train "${student[@]}" --set distillation_type=none --out "$dir/scratch"
  join
  echo "== seed $seed: the student fine-tuned, and both with the teacher" >&2
  side_by_side "$dir/finetuned.log" deitctl finetune "${student[@]}" --from "$MAIN/fashion-deit-ti-distilled" \
    --set distillation_type=none --out "$dir/finetuned"
  side_by_side "$dir/scratch-kd.log" deitctl train "${student[@]}" --teacher "$dir/teacher" --out "$dir/scratch-kd"
  join
  # One thread even alone: a model this small gains little from a second one, and loses badly to a busy machine.
  OMP_NUM_THREADS=1 deitctl finetune "${student[@]}" --from "$MAIN/fashion-deit-ti-distilled" --teacher "$dir/teacher" \
    --out "$dir/finetuned-kd" > "$dir/finetuned-kd.log" 2>&1
  for run in teacher scratch scratch-kd finetuned finetuned-kd; do
    deitctl eval "$dir/$run" --save --json > /dev/null
  done
  deitctl report "$dir"/{teacher,scratch,scratch-kd,finetuned,finetuned-kd} --out "$dir/report.md" > /dev/null
  grep -A 12 "^| method\|^| run" "$dir/report.md" | head -14 >&2 || true
done
python scripts/transfer_table.py "$OUT" | tee "$OUT/summary.md"
echo "reports: $OUT/seed-*/report.md, all seeds: $OUT/summary.md" >&2
