#!/usr/bin/env bash
# The token-merging rows of docs/ablation-fmnist.md: ToMe, ATME and CAIT-style (ATME + CDCP)
# against dTPS and EViT on the Fashion-MNIST ViT, at the MACs of dTPS keep 0.7, two seeds each.
# One command, three `tpsc sweep` runs and one table:
#   1. ToMe off the shelf: `tpsc sweep --eval` of the dense model at r = TOME_R (no training);
#   2. one fine-tune per method and seed from the dense model, the dense model teaching
#      (cls distillation), the same recipe for every method (recipes/fmnist_cait.ini with its
#      channel gates off): tome r = TOME_R, atme, dtps and evit at keep 0.7 in blocks 3, 4, 5;
#   3. cait: recipes/fmnist_cait.ini itself (the same fine-tune, attention channels at 0.5).
# then prints the Markdown table (mean and range over seeds) from the sweeps' summary.csv.
#
#   bash scripts/ablation_merging.sh [--set k=v]...   # resumable: rerun to continue
# Extra arguments go to every sweep (e.g. --set data.limit_val=2000).
# Environment: DENSE (default checkpoints/fmnist_vit/best.h5, the quickstart's dense model),
# OUT (default checkpoints/ablation-merging), TOME_R (default 3: ToMe's MACs closest to dTPS
# 0.7's on this model), LIMIT_TRAIN (training images per fine-tune; default 0 = the whole
# epoch), THREADS (default 2), SEEDS (default 0,1).
set -euo pipefail
cd "$(dirname "$0")/.."
TPSC=${TPSC:-./build/tpsc}
DENSE=${DENSE:-checkpoints/fmnist_vit/best.h5}
OUT=${OUT:-checkpoints/ablation-merging}
TOME_R=${TOME_R:-3}
LIMIT_TRAIN=${LIMIT_TRAIN:-0}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-0,1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
[ -f "$DENSE" ] || { echo "ablation_merging: no dense model $DENSE (run bash scripts/quickstart.sh, or set DENSE)" >&2; exit 2; }

common=(--set "model.init=$DENSE" --set "teacher.checkpoint=$DENSE" --set "data.limit_train=$LIMIT_TRAIN"
        --grid "run.seed=$SEEDS" --threads "$THREADS" --no-plot --quiet "$@")

echo "== 1/3 ToMe off the shelf, r = $TOME_R (evaluation only)"
$TPSC sweep --eval "$DENSE" --set tps.method=tome --grid "tps.tome_r=$TOME_R" --out "$OUT/tome-off-the-shelf" --no-plot --quiet "$@"

echo "== 2/3 fine-tunes: tome, atme, dtps, evit"
$TPSC sweep recipes/fmnist_cait.ini --grid "tps.method=tome,atme,dtps,evit" --set "tps.tome_r=$TOME_R" \
  --set cdcp.keep_qk=1 --set cdcp.keep_v=1 --set cdcp.keep_mlp=1 --out "$OUT/finetune" "${common[@]}"

echo "== 3/3 fine-tune: cait (ATME + attention channels at 0.5)"
$TPSC sweep recipes/fmnist_cait.ini --out "$OUT/cait" "${common[@]}"

echo
echo "| setting | GMACs/img | top-1 mean | top-1 min / max | runs |"
echo "|---|---|---|---|---|"
python3 - "$OUT" <<'PY'
import csv, os, sys
out = sys.argv[1]
rows = []
for sweep, label in (("tome-off-the-shelf", "off the shelf"), ("finetune", "fine-tuned"), ("cait", "fine-tuned")):
    path = os.path.join(out, sweep, "summary.csv")
    if not os.path.exists(path):
        continue
    for r in csv.DictReader(open(path)):
        rows.append(("%s, %s" % (r["method"], label), float(r["gmacs_per_image"]), float(r["top1_mean"]),
                     float(r["top1_min"]), float(r["top1_max"]), r["n_runs"]))
for name, g, m, lo, hi, n in rows:
    print("| %s | %.4f | %.2f%% | %.2f / %.2f | %s |" % (name, g, m, lo, hi, n))
PY
