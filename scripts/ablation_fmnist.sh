#!/usr/bin/env bash
# The Fashion-MNIST ablation of docs/ablation-fmnist.md: does squeezing (dTPS, eTPS) beat
# prune-only (DynamicViT, EViT) more and more as the keep ratio falls?
#
# REDUCED protocol (compute was 2 shared CPU cores): a dense ViT (recipes/fmnist_vit.ini)
# trained for DENSE_EPOCHS epochs, then per setting a short fine-tune of FT_STEPS steps on the
# first FT_STEPS*128 training images, from the same dense weights, with the dense model as
# teacher (distillation applies to the predictor methods, as the recipes say). Every setting
# runs with two seeds; the test set is the full 10k Fashion-MNIST test split.
#
#   bash scripts/ablation_fmnist.sh            # everything, resumable: rerun to continue
#   PARALLEL=2 bash scripts/ablation_fmnist.sh # two sweep processes (one per method pair) into
#                                              # the same folder, then one pass for the tables
set -euo pipefail
cd "$(dirname "$0")/.."
TPSC=${TPSC:-./build/tpsc}
OUT=${OUT:-checkpoints/ablation-fmnist}
DENSE_EPOCHS=${DENSE_EPOCHS:-3}
FT_STEPS=${FT_STEPS:-100}
THREADS=${THREADS:-1}
PARALLEL=${PARALLEL:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# 1. the dense model (skipped when its last checkpoint is complete)
if [ ! -f "$OUT/dense/done" ]; then
  $TPSC train recipes/fmnist_vit.ini --quiet --set run.out_dir="$OUT" --set run.name=dense \
    --set schedule.epochs="$DENSE_EPOCHS" --set run.threads="$THREADS" --set run.log_every=50 \
    $( [ -f "$OUT/dense/last.h5" ] && echo --resume "$OUT/dense/last.h5" )
  touch "$OUT/dense/done"
fi

# 2. the sweep: 4 keep ratios x 4 methods x 2 seeds, fine-tuned from the dense model; the
#    keep ratio is the outer loop, so a sweep cut short still compares every method at the
#    ratios it reached, lowest (where the claim is) first
SETS=(--set model.init="$OUT/dense/best.h5" --set teacher.checkpoint="$OUT/dense/best.h5"
      --set data.limit_train=$((FT_STEPS * 128)) --set schedule.epochs=1 --set schedule.warmup_epochs=0
      --set run.log_every=50)
RATIOS=tps.keep_ratio=0.3,0.5,0.7,0.9
SEEDS=run.seed=0,1
sweep() { $TPSC sweep recipes/fmnist_dtps.ini "${SETS[@]}" --threads "$THREADS" --out "$OUT/sweep" --quiet "$@"; }
if [ "$PARALLEL" -gt 1 ]; then
  # Same folder names and recipes as the full grid, so the last pass finds every point done.
  sweep --grid $RATIOS --grid tps.method=dynamicvit,dtps --grid $SEEDS --no-plot > "$OUT/sweep-a.log" 2>&1 &
  a=$!
  sweep --grid $RATIOS --grid tps.method=evit,etps --grid $SEEDS --no-plot > "$OUT/sweep-b.log" 2>&1 &
  b=$!
  wait $a
  wait $b
fi
sweep --grid $RATIOS --grid tps.method=dynamicvit,dtps,evit,etps --grid $SEEDS
# the dense reference, evaluated once
$TPSC eval "$OUT/dense/best.h5"
