#!/usr/bin/env bash
# The Fashion-MNIST ablation of docs/ablation-fmnist.md: does squeezing (dTPS, eTPS) beat
# prune-only (DynamicViT, EViT) more and more as the keep ratio falls?
#
# REDUCED protocol (compute was 2 shared CPU cores): a dense ViT (recipes/fmnist_vit.ini)
# trained for DENSE_EPOCHS epochs, then per setting a short fine-tune of FT_STEPS steps on the
# first FT_STEPS*128 training images (one pass), from the same dense weights, with the dense model as
# teacher (distillation applies to the predictor methods, as the recipes say). Every setting
# runs with two seeds; the test set is the full 10k Fashion-MNIST test split.
#
#   bash scripts/ablation_fmnist.sh            # everything, resumable: rerun to continue
#   PARALLEL=2 bash scripts/ablation_fmnist.sh # two copies of the sweep share the grid (each
#                                              # point is locked by its process), then one pass
#                                              # collects the tables and the plot
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
    --set schedule.epochs="$DENSE_EPOCHS" --set run.threads="$THREADS" --set run.log_every=50 --set data.workers=2 \
    $( [ -f "$OUT/dense/last.h5" ] && echo --resume "$OUT/dense/last.h5" )
  touch "$OUT/dense/done"
fi

# 2. the sweep: 4 keep ratios x 4 methods x 2 seeds, fine-tuned from the dense model; the
#    keep ratio is the outer loop, so a sweep cut short still compares every method at the
#    ratios it reached, lowest (where the claim is) first
# optim.lr, loss.ratio_weight, data.workers, tps.prune_loc, loss.guide_weight, data.batch_size and
# optim.freeze pin
# recipes/fmnist_dtps.ini as it was when the
# numbers of docs/ablation-fmnist.md were measured (before commit 4f6d273 retuned it for the
# quickstart); each finished run keeps its full recipe in <run>/recipe.ini and its checkpoint,
# and the sweep refuses to mix runs of different recipes.
SETS=(--set model.init="$OUT/dense/best.h5" --set teacher.checkpoint="$OUT/dense/best.h5"
      --set data.limit_train=$((FT_STEPS * 128)) --set schedule.epochs=1 --set schedule.warmup_epochs=0
      --set optim.lr=5e-4 --set loss.ratio_weight=2 --set data.workers=2 --set run.log_every=50
      --set tps.prune_loc=2,3,5 --set loss.guide_weight=0 --set data.batch_size=128 --set optim.freeze=)
RATIOS=tps.keep_ratio=0.3,0.5,0.7,0.9
SEEDS=run.seed=0,1
sweep() { $TPSC sweep recipes/fmnist_dtps.ini "${SETS[@]}" --threads "$THREADS" --out "$OUT/sweep" --quiet "$@"; }
GRID=(--grid $RATIOS --grid tps.method=dynamicvit,dtps,evit,etps --grid $SEEDS)
# Copies of the same sweep share the grid: each point is locked by the process running it.
pids=()
for ((i = 1; i < PARALLEL; i++)); do
  sweep "${GRID[@]}" --no-plot > "$OUT/sweep-$i.log" 2>&1 &
  pids+=($!)
done
sweep "${GRID[@]}" --no-plot
for p in "${pids[@]}"; do wait "$p" || true; done
# every point is finished now: one last pass collects the tables and draws the plot
sweep "${GRID[@]}" --title "Fashion-MNIST, reduced protocol: top-1 vs compute (mean of 2 seeds, bars min..max)"
# the dense reference, evaluated once
$TPSC eval "$OUT/dense/best.h5"
