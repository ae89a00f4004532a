#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the main job on the
# embedded default data (Fashion-MNIST from Debian's dataset-fashion-mnist):
#   1. train a small dense ViT from scratch           (recipes/fmnist_vit.ini)
#   2. warm up the dTPS score predictors on the dense model's attention (recipes/fmnist_dtps_warmup.ini)
#   3. fine-tune with dTPS, the dense model teaching (recipes/fmnist_dtps.ini)
#   4. evaluate dense and dTPS through libtpsinfer, side by side (test top-1, GMACs/image, images/s)
# Extra arguments go to every training run, e.g. --set run.threads=2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
OUT=${TPSC_OUT:-checkpoints}
start=$(date +%s)
echo "== 1/4 dense ViT on Fashion-MNIST (recipes/fmnist_vit.ini)"
./build/tpsc train recipes/fmnist_vit.ini --quiet --set run.out_dir="$OUT" "$@"
dense="$OUT/fmnist_vit/best.h5"
echo "== 2/4 score-predictor warm-up, backbone frozen (recipes/fmnist_dtps_warmup.ini)"
./build/tpsc train recipes/fmnist_dtps_warmup.ini --quiet --set run.out_dir="$OUT" \
  --set model.init="$dense" --set teacher.checkpoint="$dense" "$@"
echo "== 3/4 dTPS fine-tune, keep 0.7 (recipes/fmnist_dtps.ini)"
./build/tpsc train recipes/fmnist_dtps.ini --quiet --set run.out_dir="$OUT" \
  --set model.init="$OUT/fmnist_dtps_warmup/last.h5" --set teacher.checkpoint="$dense" "$@"
echo "== 4/4 dense vs dTPS, measured side by side in libtpsinfer (the deployment library, tokens really removed)"
./build/tpsc eval "$dense" "$OUT/fmnist_dtps/best.h5" --precision fp32
echo "main job done in $(( $(date +%s) - start )) s"
