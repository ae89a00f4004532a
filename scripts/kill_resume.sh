#!/usr/bin/env bash
# kill -9 at random moments of a tiny training run and of a tiny sweep, then resume, over and
# over: every time the checkpoint left behind must load, the resume must go on, and the end
# result must be bit-identical to a run never interrupted (weights, optimiser moments, EMA and
# loader position, compared by tests/reliability/ckpt_digest).
#   bash scripts/kill_resume.sh [TPSC [CKPT_DIGEST]]    (defaults: build/tpsc, build/tests/ckpt_digest)
# KILL_RESUME_CYCLES (default 20) kills per part; ctest runs 3 (reliability_kill_resume).
# KILL_RESUME_EPOCHS (default 30) sets the training run's length; ctest runs 12, so that the test
# stays well inside its time limit under ASan on a loaded machine.
# KILL_RESUME_SEED fixes the random kill times (default: a fresh seed, printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TPSC=${1:-$ROOT/build/tpsc}
DIGEST=${2:-$ROOT/build/tests/ckpt_digest}
CYCLES=${KILL_RESUME_CYCLES:-20}
SEED=${KILL_RESUME_SEED:-$$}
EPOCHS=${KILL_RESUME_EPOCHS:-30}
RANDOM=$SEED
RECIPE=$ROOT/tests/reliability/tiny.ini
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
W=$(mktemp -d /tmp/tpsc_kill_resume_XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_WAIT_POLICY=PASSIVE
fail() { echo "FAIL (seed $SEED): $*" >&2; exit 1; }
echo "kill_resume: $CYCLES kills per part, $EPOCHS epochs, seed $SEED"
# Epochs of 8 steps, a checkpoint after each: long enough that kills land in every phase
# (start-up, steps, evaluation, the checkpoint write itself).
train=(--quiet --set "schedule.epochs=$EPOCHS" --set run.threads=1)

# Milliseconds since an arbitrary start.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Runs CMD... in the background and kills it with -9 after a random delay in [50 ms, $limit
# ms]. Returns 0 when it was killed, 1 when it ended by itself first (then $rc is its status).
kill_at_random() {
  local delay=$(( 50 + (RANDOM * 32768 + RANDOM) % (limit - 50 + 1) ))
  "$@" >/dev/null 2>>"$W/stderr" &
  local pid=$! t0
  t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt $delay ]; do
    if ! kill -0 $pid 2>/dev/null; then rc=0; wait $pid || rc=$?; return 1; fi
    sleep 0.01
  done
  if kill -9 $pid 2>/dev/null; then wait $pid 2>/dev/null || true; return 0; fi
  rc=0; wait $pid || rc=$?; return 1
}

# ---- a training run -------------------------------------------------------------------------
t0=$(now_ms)
"$TPSC" train "$RECIPE" "${train[@]}" --set "run.out_dir=$W" --set run.name=straight >/dev/null 2>"$W/stderr" \
  || fail "the straight run failed: $(tail -3 "$W/stderr")"
limit=$(( $(now_ms) - t0 ))
want=$("$DIGEST" "$W/straight/last.h5")
echo "straight run: $limit ms, $want"

kills=0 loaded=0 starts=0
dir=$W/killed
while [ $kills -lt "$CYCLES" ]; do
  resume=()
  [ -f "$dir/last.h5" ] && resume=(--resume "$dir/last.h5")
  starts=$((starts + 1))
  if kill_at_random "$TPSC" train "$RECIPE" "${train[@]}" --set "run.out_dir=$W" --set run.name=killed "${resume[@]}"; then
    kills=$((kills + 1))
    if [ -f "$dir/last.h5" ]; then
      got=$("$DIGEST" "$dir/last.h5" 2>&1) || fail "kill $kills: last.h5 does not load: $got"
      loaded=$((loaded + 1))
    fi
  else
    [ "$rc" = 0 ] || fail "a resumed run failed (exit $rc): $(tail -3 "$W/stderr")"
    # finished before its kill: start over from scratch, so every kill lands in a live run
    got=$("$DIGEST" "$dir/last.h5")
    [ "$got" = "$want" ] || fail "finished after $kills kills but differs: $got vs $want"
    rm -rf "$dir"
  fi
done
resume=()
[ -f "$dir/last.h5" ] && resume=(--resume "$dir/last.h5")
"$TPSC" train "$RECIPE" "${train[@]}" --set "run.out_dir=$W" --set run.name=killed "${resume[@]}" >/dev/null 2>>"$W/stderr" \
  || fail "the final resume failed: $(tail -3 "$W/stderr")"
got=$("$DIGEST" "$dir/last.h5")
[ "$got" = "$want" ] || fail "the resumed run differs from the straight one: $got vs $want"
echo "training: $kills kills -9 in $starts starts, $loaded left a last.h5 that loaded; final state bit-identical"

# ---- a sweep (two points, trained in-process, resumed by running the same command) ----------
sweep=(--quiet --no-plot --set schedule.epochs=6 --set run.threads=1 --grid tps.keep_ratio=0.6,0.8)
t0=$(now_ms)
"$TPSC" sweep "$RECIPE" "${sweep[@]}" --out "$W/sweep-straight" >/dev/null 2>"$W/stderr" \
  || fail "the straight sweep failed: $(tail -3 "$W/stderr")"
limit=$(( $(now_ms) - t0 ))
kills=0 loaded=0 starts=0
while [ $kills -lt "$CYCLES" ]; do
  starts=$((starts + 1))
  if kill_at_random "$TPSC" sweep "$RECIPE" "${sweep[@]}" --out "$W/sweep-killed"; then
    kills=$((kills + 1))
    for ck in "$W"/sweep-killed/*/last.h5; do
      [ -f "$ck" ] || continue
      got=$("$DIGEST" "$ck" 2>&1) || fail "sweep kill $kills: $ck does not load: $got"
      loaded=$((loaded + 1))
    done
  else
    [ "$rc" = 0 ] || fail "a resumed sweep failed (exit $rc): $(tail -3 "$W/stderr")"
    for p in "$W"/sweep-straight/*/; do
      p=$(basename "$p")
      [ "$("$DIGEST" "$W/sweep-killed/$p/last.h5")" = "$("$DIGEST" "$W/sweep-straight/$p/last.h5")" ] \
        || fail "sweep point $p differs after $kills kills"
    done
    rm -rf "$W/sweep-killed"
  fi
done
"$TPSC" sweep "$RECIPE" "${sweep[@]}" --out "$W/sweep-killed" >/dev/null 2>>"$W/stderr" \
  || fail "the final sweep resume failed: $(tail -3 "$W/stderr")"
n=0
for p in "$W"/sweep-straight/*/; do
  p=$(basename "$p")
  a=$("$DIGEST" "$W/sweep-killed/$p/last.h5") b=$("$DIGEST" "$W/sweep-straight/$p/last.h5")
  [ "$a" = "$b" ] || fail "sweep point $p: resumed $a, straight $b"
  n=$((n + 1))
done
cmp -s <(cut -d, -f1-3 "$W/sweep-killed/results.csv") <(cut -d, -f1-3 "$W/sweep-straight/results.csv") \
  || fail "results.csv differs from the straight sweep's"
echo "sweep: $kills kills -9 in $starts starts, $loaded checkpoints loaded; $n points bit-identical"
echo "kill_resume: all checks passed"
