#!/usr/bin/env bash
# One process with T threads against N MPI ranks with T/N threads each, on this machine, in
# alternation: the layout question of docs/distributed.md ("Measured on this machine").
#
#   bash bench/mpi_layout.sh [--ranks 2] [--threads 2] [--rounds 5] [--fmnist-steps 40] [--deit-batch 8] [--deit-steps 2] [--no-deit] [--no-fmnist]
#
# Each round runs the two layouts back to back, alternating which goes first, so that a load
# that drifts during the run weighs on both alike. It prints the median over rounds of each
# layout's images/s and of the per-round ratio (ranks / threads), and the ranks' allreduce time
# per step, exposed (not hidden behind the backward) and in flight. The workloads:
#   - the Fashion-MNIST recipe (recipes/fmnist_vit.ini, global batch 64, steps 3 to S of
#     metrics.jsonl: the first steps warm the loader and the caches);
#   - `tpsc bench train`, DeiT-S dTPS at global batch B (the median step of --deit-steps).
# Ranks run `mpirun -np N --bind-to none` (Open MPI would bind both ranks of a 2-rank job to
# cores in a way that can stack a rank's threads on one core) with --allow-run-as-root and
# --oversubscribe, as CI runs as root. Uses build/tpsc, or $TPSC_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TPSC=${TPSC_BIN:-$ROOT/build/tpsc}
ranks=2 threads=2 rounds=5 fsteps=40 dbatch=8 dsteps=2 deit=1 fmnist=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) ranks=$2; shift ;;
    --threads) threads=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --fmnist-steps) fsteps=$2; shift ;;
    --deit-batch) dbatch=$2; shift ;;
    --deit-steps) dsteps=$2; shift ;;
    --no-deit) deit=0 ;;
    --no-fmnist) fmnist=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "mpi_layout.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$TPSC" ] || { echo "mpi_layout.sh: no $TPSC; build it first" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "mpi_layout.sh: no mpirun (bash scripts/setup.sh installs Open MPI)" >&2; exit 2; }
[ $((threads % ranks)) = 0 ] || { echo "mpi_layout.sh: --threads $threads is not a multiple of --ranks $ranks" >&2; exit 2; }
per_rank=$((threads / ranks))
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
MPI=(mpirun --allow-run-as-root --oversubscribe -np "$ranks" --bind-to none)
W=$(mktemp -d /tmp/tpsc_mpi_layout_XXXXXX)
trap 'rm -rf "$W"' EXIT

# Median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# fmnist [mpi]: prints "images/s exposed_ms inflight_ms", medians over steps 3..S.
fmnist() {
  local name=fmnist-${1:-threads}-$RANDOM$RANDOM
  local args=(train "$ROOT/recipes/fmnist_vit.ini" --quiet --set "run.out_dir=$W" --set "run.name=$name"
              --set "schedule.max_steps=$fsteps" --set data.batch_size=64 --set run.log_every=1)
  if [ "${1:-}" = mpi ]; then "${MPI[@]}" "$TPSC" "${args[@]}" --set "run.threads=$per_rank" >/dev/null 2>"$W/$name.err"
  else "$TPSC" "${args[@]}" --set "run.threads=$threads" >/dev/null 2>"$W/$name.err"; fi ||
    { echo "mpi_layout.sh: $name failed: $(tail -3 "$W/$name.err")" >&2; exit 1; }
  local m=$W/$name/metrics.jsonl col
  for col in images_per_s allreduce_exposed_ms allreduce_inflight_ms; do
    grep '"step"' "$m" | grep -v '"eval"' | awk -v c="\"$col\": " 'NR >= 3 { i = index($0, c); if (i) { s = substr($0, i + length(c)); print s + 0 } }' | median
  done | paste -sd' '
  rm -rf "${W:?}/$name"
}

# deit [mpi]: prints "images/s exposed_ms inflight_ms" of one `tpsc bench train`.
deit() {
  local out=$W/deit.out
  if [ "${1:-}" = mpi ]; then "${MPI[@]}" "$TPSC" bench train --threads "$per_rank" --batch "$dbatch" --steps "$dsteps" >"$out" 2>&1
  else "$TPSC" bench train --threads "$threads" --batch "$dbatch" --steps "$dsteps" >"$out" 2>&1; fi ||
    { echo "mpi_layout.sh: bench train failed: $(tail -3 "$out")" >&2; exit 1; }
  local ips exp inf
  ips=$(awk -F'|' '$2 ~ /train/ { gsub(/ /, "", $5); print $5 }' "$out" | head -1)
  exp=$(sed -n 's/.*(median) \([0-9.]*\) ms exposed.*/\1/p' "$out")
  inf=$(sed -n 's/.* \([0-9.]*\) ms in flight.*/\1/p' "$out")
  echo "$ips ${exp:-nan} ${inf:-nan}"
}

# run WORKLOAD: R rounds in alternation; prints one Markdown row.
run() {
  local what=$1 r one two
  : >"$W/one" ; : >"$W/two"
  for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then one=$($what) two=$($what mpi); else two=$($what mpi) one=$($what); fi
    echo "$one" >>"$W/one"; echo "$two" >>"$W/two"
    echo "  round $r/$rounds $what: 1x$threads $(cut -d' ' -f1 <<<"$one") img/s, ${ranks}x$per_rank $(cut -d' ' -f1 <<<"$two") img/s" >&2
  done
  local a b ratio exp inf
  a=$(cut -d' ' -f1 "$W/one" | median) b=$(cut -d' ' -f1 "$W/two" | median)
  ratio=$(paste -d' ' "$W/one" "$W/two" | awk '{ print $4 / $1 }' | median)
  exp=$(cut -d' ' -f2 "$W/two" | median) inf=$(cut -d' ' -f3 "$W/two" | median)
  printf '| %s | %.2f | %.2f | %.2fx | %.1f / %.1f |\n' "$2" "$a" "$b" "$ratio" "$exp" "$inf"
}

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), OMP_WAIT_POLICY $OMP_WAIT_POLICY, OpenBLAS core ${OPENBLAS_CORETYPE:-unset}, $rounds rounds, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "| workload | 1 rank x $threads threads, images/s | $ranks ranks x $per_rank, images/s | ratio (median of rounds) | allreduce exposed / in flight, ms per step |"
echo "|---|---|---|---|---|"
[ "$fmnist" = 1 ] && run fmnist "Fashion-MNIST recipe, batch 64, steps 3-$fsteps"
[ "$deit" = 1 ] && run deit "bench train DeiT-S dTPS, batch $dbatch"
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
