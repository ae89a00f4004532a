#!/usr/bin/env bash
# Write faults: a checkpoint, metrics.jsonl or sweep-result write that fails partway (ENOSPC or
# EIO, injected with TPSC_FAULT_WRITE, src/io/fault.h) stops the run with exit 1 and a message
# naming the file and the error; the previous checkpoint stays valid and loadable; no partial
# file or temporary is left. And a run refuses to start when its checkpoint folder is not
# writable.
#   bash tests/reliability/write_faults.sh TPSC CKPT_DIGEST     (ctest: reliability_write_faults)
set -euo pipefail
TPSC=$1 DIGEST=$2
HERE=$(cd "$(dirname "$0")" && pwd)
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
W=$(mktemp -d /tmp/tpsc_faults_XXXXXX)
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT
export OMP_WAIT_POLICY=PASSIVE
fail() { echo "FAIL: $*" >&2; exit 1; }
common=(--quiet --set "run.out_dir=$W" --set schedule.epochs=3)
no_temporaries() { if ls "$1"/*.tmp-* >/dev/null 2>&1; then fail "$2: temporaries left: $(ls "$1")"; fi; }

# Expects exit 1 and every pattern in the last lines of stderr.
expect_failure() {
  local what=$1 rc=$2 err=$3; shift 3
  [ "$rc" = 1 ] || fail "$what: exit $rc, expected 1; stderr: $(tail -3 "$err")"
  for pat in "$@"; do grep -q -- "$pat" "$err" || fail "$what: stderr lacks '$pat': $(tail -3 "$err")"; done
}

# 1. The checkpoint. One clean epoch measures last.h5; then the fault budget is that size, so
# the first save (fewer bytes of data than the file holds) passes and the second fails partway.
"$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set run.name=measure --set schedule.max_steps=8 >/dev/null 2>&1
size=$(stat -c %s "$W/measure/last.h5")
for errno in ENOSPC EIO; do
  name=ckpt_$errno
  rc=0
  TPSC_FAULT_WRITE="$name/last.h5:$errno:$size" "$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set run.name=$name \
    >/dev/null 2>"$W/$name.err" || rc=$?
  msg=$([ $errno = ENOSPC ] && echo "No space left on device" || echo "Input/output error")
  expect_failure "checkpoint $errno" $rc "$W/$name.err" "$name/last.h5" "$msg"
  no_temporaries "$W/$name" "checkpoint $errno"
  out=$("$DIGEST" "$W/$name/last.h5") || fail "checkpoint $errno: the previous last.h5 does not load"
  [ "$(echo "$out" | awk '{print $2}')" = 8 ] || fail "checkpoint $errno: last.h5 is not epoch 1's: $out"
  echo "checkpoint $errno: exit 1, '$(tail -1 "$W/$name.err" | cut -c1-160)', previous last.h5 ($out) loads"
done

# 2. metrics.jsonl: the write fails after a few lines; the file keeps whole lines only.
rc=0
TPSC_FAULT_WRITE="metrics.jsonl:EIO:1500" "$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set run.name=metrics \
  >/dev/null 2>"$W/metrics.err" || rc=$?
expect_failure "metrics.jsonl" $rc "$W/metrics.err" "metrics/metrics.jsonl" "Input/output error"
m="$W/metrics/metrics.jsonl"
[ -s "$m" ] || fail "metrics.jsonl: empty, expected the lines before the fault"
[ "$(tail -c1 "$m" | od -An -c | tr -d ' ')" = '\n' ] || fail "metrics.jsonl ends in half a line"
bad=$(grep -v -c '^{.*}$' "$m" || true)
[ "$bad" = 0 ] || fail "metrics.jsonl: $bad lines are not whole JSON objects"
echo "metrics.jsonl EIO: exit 1, $(wc -l <"$m") whole lines kept"

# 3. A sweep's results: done.json of the first point fails (nothing written), then results.csv
# (EIO); each stops the sweep naming the file, leaves no temporary, and a rerun completes.
sweep=(--quiet --no-plot --out "$W/sweep" --set schedule.epochs=1 --set schedule.warmup_epochs=0 --grid tps.keep_ratio=0.6,0.8)
for target in done.json results.csv; do
  rc=0
  TPSC_FAULT_WRITE="$target:ENOSPC:0" "$TPSC" sweep "$HERE/tiny.ini" "${sweep[@]}" >/dev/null 2>"$W/sweep-$target.err" || rc=$?
  expect_failure "sweep $target" $rc "$W/sweep-$target.err" "$target" "No space left on device"
  no_temporaries "$W/sweep" "sweep $target"
  for d in "$W"/sweep/*/; do no_temporaries "$d" "sweep $target"; done
  echo "sweep $target ENOSPC: exit 1, names $target"
done
"$TPSC" sweep "$HERE/tiny.ini" "${sweep[@]}" >/dev/null 2>"$W/sweep.err" || fail "sweep rerun: $(tail -3 "$W/sweep.err")"
[ "$(grep -c . "$W/sweep/results.csv")" = 3 ] || fail "sweep rerun: results.csv should have a header and 2 rows"
echo "sweep rerun after the faults: complete"

# 4. A checkpoint folder that is not writable: refused before training. root ignores
# permissions, so as root the run is made as nobody.
mkdir -p "$W/ro/run"
chmod 555 "$W/ro/run"
as=() tpsc=$TPSC recipe=$HERE/tiny.ini
if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || { echo "skip: root without setpriv"; exit 77; }
  as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  # nobody may not reach the build tree (a clone in a private folder, as mktemp -d makes), so
  # it runs copies of tpsc, its libtpsinfer and the recipe, the library found first by
  # LD_LIBRARY_PATH.
  mkdir "$W/as-nobody"
  cp "$TPSC" "$recipe" "$W/as-nobody/"
  cp -P "$(dirname "$TPSC")"/libtpsinfer.so* "$W/as-nobody/"
  tpsc=$W/as-nobody/$(basename "$TPSC") recipe=$W/as-nobody/tiny.ini
  as+=(env "LD_LIBRARY_PATH=$W/as-nobody${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  chmod o+rx "$W" "$W/ro" "$W/as-nobody"
fi
rc=0
"${as[@]}" "$tpsc" train "$recipe" --quiet --set "run.out_dir=$W/ro" --set run.name=run >/dev/null 2>"$W/ro.err" || rc=$?
expect_failure "read-only folder" $rc "$W/ro.err" "ro/run: the checkpoint folder is not writable" "Permission denied"
grep -q '"step"' "$W/ro/run/metrics.jsonl" 2>/dev/null && fail "read-only folder: it trained"
echo "read-only checkpoint folder: refused at start: $(tail -1 "$W/ro.err" | cut -c1-120)"
echo "write_faults: all checks passed"
