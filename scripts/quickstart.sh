#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the main job on the
# embedded default data (Fashion-MNIST from Debian's dataset-fashion-mnist):
#   1. train a small dense ViT from scratch           (recipes/fmnist_vit.ini)
#   2. fine-tune it with dTPS, the dense model teaching (recipes/fmnist_dtps.ini)
#   3. evaluate both in inference mode, side by side  (test top-1, GMACs/image, images/s)
# Extra arguments go to both training runs, e.g. --set run.threads=2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
OUT=${TPSC_OUT:-checkpoints}
start=$(date +%s)
echo "== 1/3 dense ViT on Fashion-MNIST (recipes/fmnist_vit.ini)"
./build/tpsc train recipes/fmnist_vit.ini --quiet --set run.out_dir="$OUT" "$@"
echo "== 2/3 dTPS fine-tune, keep 0.7 at blocks 2,3,5 (recipes/fmnist_dtps.ini)"
./build/tpsc train recipes/fmnist_dtps.ini --quiet --set run.out_dir="$OUT" \
  --set model.init="$OUT/fmnist_vit/best.h5" --set teacher.checkpoint="$OUT/fmnist_vit/best.h5" "$@"
echo "== 3/3 dense vs dTPS, measured side by side"
./build/tpsc eval "$OUT/fmnist_vit/best.h5" "$OUT/fmnist_dtps/best.h5"
echo "main job done in $(( $(date +%s) - start )) s"
