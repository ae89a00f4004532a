#!/usr/bin/env bash
# The token-merging rows of docs/ablation-fmnist.md: ToMe, ATME and CAIT-style (ATME + CDCP)
# against dTPS and EViT on the Fashion-MNIST ViT, two seeds each, in two parts (PARTS):
#   compute: at the MACs of dTPS keep 0.7
#     1. ToMe off the shelf: `tpsc sweep --eval` of the dense model at r = TOME_R (no training),
#        and at r = 0, the dense model's own top-1 (the table's reference);
#     2. one fine-tune per method and seed from the dense model, the dense model teaching
#        (cls distillation), the same recipe for every method (recipes/fmnist_cait.ini with its
#        channel gates off): tome r = TOME_R, atme, dtps and evit at keep 0.7 in blocks 3, 4, 5;
#     3. cait: recipes/fmnist_cait.ini itself (the same fine-tune, attention channels at 0.5);
#   speed: at the settings that run SPEED_LOW and SPEED_HIGH times faster than dense in libtpsinfer
#     4. cait with MLP channel gates as well, one point per CAIT_MLP value (cdcp.keep_mlp);
#     5. the token-only comparators, with the same fine-tune: tome at r = TOME_SPEED_R, tome's
#        decreasing schedule (tome_inflect -1) at r = TOME_DEC_R, and TOKEN_METHODS at keep
#        ratios TOKEN_KEEP in blocks TOKEN_LOC (tps.prune_loc; 3, 4, 5 cannot reach 1.9x);
# then, for the first seed of every setting, its measured speed-up over dense: `tpsc bench infer
# --interleave` on the run's own recipe (random weights, dense and the method in alternation,
# median of the per-pair ratios in process-CPU and wall time; kept in OUT/speed, so a rerun
# reuses it), and the Markdown table (mean and range over seeds) from the sweeps' results.csv.
#
#   bash scripts/ablation_merging.sh [--set k=v]...   # resumable: rerun to continue
#   PARTS=speed bash scripts/ablation_merging.sh      # only the speed part (steps 1, 4, 5)
# Extra arguments go to every sweep (e.g. --set data.limit_val=2000).
# Environment: DENSE (default checkpoints/fmnist_vit/best.h5, the quickstart's dense model),
# OUT (default checkpoints/ablation-merging), TOME_R (default 3: ToMe's MACs closest to dTPS
# 0.7's on this model), LIMIT_TRAIN (training images per fine-tune; default 0 = the whole
# epoch), THREADS (default 2), SEEDS (default 0,1), PARTS (default compute,speed), CAIT_MLP,
# TOME_SPEED_R, TOME_DEC_R, TOKEN_METHODS, TOKEN_KEEP, TOKEN_LOC (the speed part's settings; an
# empty value skips that sweep), BENCH (default 1; 0 skips the speed measurement), BENCH_THREADS (default 2),
# BENCH_ITERS (default 15 pairs), BENCH_BATCH (default 256, the recipes' evaluation batch).
set -euo pipefail
cd "$(dirname "$0")/.."
TPSC=${TPSC:-./build/tpsc}
DENSE=${DENSE:-checkpoints/fmnist_vit/best.h5}
OUT=${OUT:-checkpoints/ablation-merging}
TOME_R=${TOME_R:-3}
LIMIT_TRAIN=${LIMIT_TRAIN:-0}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-0,1}
PARTS=${PARTS:-compute,speed}
CAIT_MLP=${CAIT_MLP-0.75,0.5}
TOME_SPEED_R=${TOME_SPEED_R-8}
TOME_DEC_R=${TOME_DEC_R-7}
TOKEN_METHODS=${TOKEN_METHODS-evit}
TOKEN_KEEP=${TOKEN_KEEP-0.5}
TOKEN_LOC=${TOKEN_LOC-1,2,3}
BENCH=${BENCH:-1}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_ITERS=${BENCH_ITERS:-15}
BENCH_BATCH=${BENCH_BATCH:-256}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
[ -f "$DENSE" ] || { echo "ablation_merging: no dense model $DENSE (run bash scripts/quickstart.sh, or set DENSE)" >&2; exit 2; }
part() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

common=(--set "model.init=$DENSE" --set "teacher.checkpoint=$DENSE" --set "data.limit_train=$LIMIT_TRAIN"
        --grid "run.seed=$SEEDS" --threads "$THREADS" --no-plot --quiet "$@")
no_channels=(--set cdcp.keep_qk=1 --set cdcp.keep_v=1 --set cdcp.keep_mlp=1)

echo "== 1 the dense model (ToMe r = 0) and ToMe off the shelf, r = $TOME_R (evaluation only)"
$TPSC sweep --eval "$DENSE" --set tps.method=tome --grid "tps.tome_r=0,$TOME_R" --out "$OUT/tome-off-the-shelf" --no-plot --quiet "$@"

if part compute; then
  echo "== 2 fine-tunes at dTPS 0.7's MACs: tome, atme, dtps, evit"
  $TPSC sweep recipes/fmnist_cait.ini --grid "tps.method=tome,atme,dtps,evit" --set "tps.tome_r=$TOME_R" \
    "${no_channels[@]}" --out "$OUT/finetune" "${common[@]}"
  echo "== 3 fine-tune: cait (ATME + attention channels at 0.5)"
  $TPSC sweep recipes/fmnist_cait.ini --out "$OUT/cait" "${common[@]}"
fi

if part speed; then
  if [ -n "$CAIT_MLP" ]; then
    echo "== 4 fine-tunes at measured speed-ups: cait with MLP channels kept at $CAIT_MLP"
    $TPSC sweep recipes/fmnist_cait.ini --grid "cdcp.keep_mlp=$CAIT_MLP" --out "$OUT/cait-speed" "${common[@]}"
  fi
  if [ -n "$TOME_SPEED_R" ]; then
    echo "== 5 fine-tunes at measured speed-ups: tome r = $TOME_SPEED_R"
    $TPSC sweep recipes/fmnist_cait.ini --set tps.method=tome --grid "tps.tome_r=$TOME_SPEED_R" \
      "${no_channels[@]}" --out "$OUT/tome-speed" "${common[@]}"
  fi
  if [ -n "$TOKEN_METHODS" ] && [ -n "$TOKEN_KEEP" ]; then
    echo "== 5 fine-tunes at measured speed-ups: $TOKEN_METHODS at keep $TOKEN_KEEP in blocks $TOKEN_LOC"
    $TPSC sweep recipes/fmnist_cait.ini --grid "tps.method=$TOKEN_METHODS" --grid "tps.keep_ratio=$TOKEN_KEEP" \
      --set "tps.prune_loc=$TOKEN_LOC" "${no_channels[@]}" --out "$OUT/token-speed" "${common[@]}"
  fi
  if [ -n "$TOME_DEC_R" ]; then
    echo "== 5 fine-tunes at measured speed-ups: tome r = $TOME_DEC_R, decreasing schedule"
    $TPSC sweep recipes/fmnist_cait.ini --set tps.method=tome --set tps.tome_inflect=-1 --grid "tps.tome_r=$TOME_DEC_R" \
      "${no_channels[@]}" --out "$OUT/tome-dec-speed" "${common[@]}"
  fi
fi

echo
python3 - "$OUT" "$BENCH" "$TPSC" "$BENCH_THREADS" "$BENCH_ITERS" "$BENCH_BATCH" "$TOKEN_LOC" <<'PY'
import csv, os, subprocess, sys
out, bench, tpsc, threads, iters, batch, token_loc = sys.argv[1:]
sweeps = (("tome-off-the-shelf", "off the shelf"), ("finetune", "fine-tuned"), ("cait", "fine-tuned"),
          ("cait-speed", "fine-tuned"), ("tome-speed", "fine-tuned"),
          ("tome-dec-speed", "decreasing schedule, fine-tuned"),
          ("token-speed", "blocks %s, fine-tuned" % token_loc.replace(",", ", ")))
FIXED = 12  # results.csv: run .. resumed, then one column per grid key

def speed(sweep, run):
    """`tpsc bench infer --interleave` on the run's recipe: (cpu, wall, MACs ratio), kept in OUT/speed."""
    path = os.path.join(out, "speed", "%s+%s.txt" % (sweep, run))
    if not os.path.exists(path):
        if bench != "1":
            return None
        recipe = os.path.join(out, sweep, run, "recipe.ini")
        cmd = [tpsc, "bench", "infer", "--recipe", recipe, "--interleave", "--batch", batch,
               "--threads", threads, "--iters", iters]
        res = subprocess.run(cmd, capture_output=True, text=True)
        rows = [l for l in res.stdout.splitlines() if l.startswith("| ") and not l.startswith("| method")]
        if res.returncode != 0 or not rows:
            sys.stderr.write("ablation_merging: %s failed:\n%s%s" % (" ".join(cmd), res.stdout, res.stderr))
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(" ".join(cmd) + "\n" + res.stdout)
        os.replace(path + ".tmp", path)
    rows = [l for l in open(path).read().splitlines() if l.startswith("| ") and not l.startswith("| method")]
    cells = [c.strip() for c in rows[-1].strip("|").split("|")]
    return cells[5], cells[4], cells[6]  # speed-up cpu, wall, MACs ratio

groups, dense = [], None
for sweep, label in sweeps:
    path = os.path.join(out, sweep, "results.csv")
    if not os.path.exists(path):
        continue
    with open(path) as f:
        reader = csv.reader(f)
        head = next(reader)
        by = {}
        for r in reader:
            axes = [(k.split(".", 1)[1], v) for k, v in zip(head[FIXED:], r[FIXED:]) if k != "run.seed"]
            by.setdefault(tuple(axes), []).append(dict(zip(head, r)))
    for axes, runs in by.items():
        first = min(runs, key=lambda x: int(x["seed"]))
        top1 = [float(x["top1"]) for x in runs]
        if sweep == "tome-off-the-shelf" and dict(axes).get("tome_r") == "0":
            dense = (float(first["gmacs_per_image"]), sum(top1) / len(top1))
            continue
        what = " ".join("%s=%s" % a for a in axes if a[0] != "method")
        name = "%s%s, %s" % (first["method"], " (%s)" % what if what else "", label)
        groups.append((name, sweep, first["run"], float(first["gmacs_per_image"]), top1))

print("Speed-up: `tpsc bench infer --interleave`, batch %s, %s threads, median of %s pairs (process CPU time / wall)." %
      (batch, threads, iters))
print()
print("| setting | GMACs/img | MACs ratio | speed-up CPU / wall | top-1 mean | min / max | runs | vs dense |")
print("|---|---|---|---|---|---|---|---|")
if dense:
    print("| dense (ToMe r=0), evaluated | %.4f | 1.00x | 1.00x | %.2f%% | - | 1 | - |" % dense)
for name, sweep, run, g, top1 in groups:
    sp = speed(sweep, run)
    mean = sum(top1) / len(top1)
    print("| %s | %.4f | %s | %s | %.2f%% | %.2f / %.2f | %d | %s |" % (
        name, g, "%.2fx" % (dense[0] / g) if dense else "-", "%s / %s" % sp[:2] if sp else "-", mean, min(top1),
        max(top1), len(top1), "%+.2f" % (mean - dense[1]) if dense else "-"))
PY
