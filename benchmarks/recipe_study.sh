#!/usr/bin/env bash
# The recipe study: training variants of the `small` preset at 32x32 on the same synthetic
# Shepard–Metzler data, each given the same training CPU time (--max_cpu_seconds, held-out
# evaluation not counted), one at a time, then one figure of their held-out curves.
#
#   python data/synthesize.py --dataset shepard_metzler_7_parts --out data/sm7 \
#       --train_scenes 20000 --test_scenes 1000 --scenes_per_shard 500 --seed 0 --workers 2
#   bash benchmarks/recipe_study.sh [VARIANT ...]      # default: a b c d; then the figure
#
# Run from the repository root. A variant stopped early resumes where it stopped when run
# again (its CPU budget counts over resumes); a finished one returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
BUDGET=${BUDGET:-1800}  # training CPU seconds per variant
COMMON=(--dataset shepard_metzler_7_parts --data_dir data/sm7 --preset small --frame_size 32
        --batch_size 16 --max_context_size 5 --max_steps 400000 --log_every 100
        --image_every 0 --checkpoint_every 500 --keep_checkpoints 2 --eval_every 300
        --eval_scenes 128 --max_cpu_seconds "$BUDGET")

variant() {
  case "$1" in
    # (a) the bundled model's recipe: σ 2.0 → 0.3 over 2,000 steps, latents alive early.
    a) echo --sigma_steps 2000 --sigma_final 0.3 ;;
    # (b) a deterministic phase at σ = 0.7 (the latents collapse, the prior path learns),
    #     then σ → 0.3 to wake the latents.
    b) echo --sigma_schedule 0:2.0,2000:0.7,5000:0.7,6000:0.3 ;;
    # (c) (a) with twice the learning rate after a 500-step warm-up.
    c) echo --sigma_steps 2000 --sigma_final 0.3 --lr_initial 1e-3 --lr_warmup_steps 500 ;;
    # (d) (a) with twice the hidden channels of the cores (fewer steps in the same time).
    d) echo --sigma_steps 2000 --sigma_final 0.3 --model hidden_channels=64 ;;
    *) echo "recipe_study.sh: unknown variant $1 (use a, b, c or d)" >&2; return 2 ;;
  esac
}

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(a b c d)
mkdir -p runs/study
for v in "${variants[@]}"; do
  flags=$(variant "$v")
  echo "variant $v: $flags"
  # shellcheck disable=SC2086
  nice -n 10 "$PYTHON" train.py "${COMMON[@]}" $flags --model_dir "runs/study/$v" \
    > "runs/study/$v.log" 2>&1
done
runs=()
for v in a b c d; do
  [ -f "runs/study/$v/eval/metrics.jsonl" ] && runs+=(--run "$v=runs/study/$v")
done
"$PYTHON" benchmarks/plot_runs.py "${runs[@]}" --out docs/images/study.png \
  --title "Held-out (test) MSE ratios against training CPU time, small preset, 32x32, B = 16"
