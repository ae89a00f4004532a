#!/usr/bin/env bash
# Preemption: SIGTERM (SLURM) and SIGINT (Ctrl-C) during `tpsc train` write a resumable last.h5
# at the next step boundary and exit 143 / 130; the resumed run ends bit-identical to a run
# never interrupted; a second signal exits at once without waiting for the step.
#   bash tests/reliability/preempt.sh TPSC CKPT_DIGEST      (ctest: reliability_preempt)
set -euo pipefail
TPSC=$1 DIGEST=$2
HERE=$(cd "$(dirname "$0")" && pwd)
[ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
W=$(mktemp -d /tmp/tpsc_preempt_XXXXXX)
trap 'rm -rf "$W"' EXIT
set -m # background jobs get SIGINT as a foreground one would (not ignored)
export OMP_WAIT_POLICY=PASSIVE
fail() { echo "FAIL: $*" >&2; exit 1; }
# 400 epochs of 8 steps: far longer than the test waits, so the signal lands mid-run.
common=(--quiet --set "run.out_dir=$W" --set schedule.epochs=400)

# Starts a run in the background and waits until it has logged at least $2 steps. With a third
# argument, the run goes through a plain sh that writes its exit status to that file, and $pid
# is tpsc's own pid (the sh's child).
start_run() {
  local name=$1 steps=$2 rc_file=${3:-}
  if [ -n "$rc_file" ]; then
    sh -c '"$@"; echo $? >"$0"' "$rc_file" "$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set "run.name=$name" \
      >"$W/$name.out" 2>"$W/$name.err" &
    local wrapper=$! i
    pid=
    for i in $(seq 100); do # the child of the wrapper: field 4 of /proc/PID/stat is the parent
      pid=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$wrapper" '$4 == p { print $1; exit }' || true)
      [ -n "$pid" ] && break
      sleep 0.05
    done
    [ -n "$pid" ] || fail "$name: tpsc did not start"
  else
    "$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set "run.name=$name" >"$W/$name.out" 2>"$W/$name.err" &
    pid=$!
  fi
  for _ in $(seq 600); do
    if [ -f "$W/$name/metrics.jsonl" ] && [ "$(grep -c '"step"' "$W/$name/metrics.jsonl")" -ge "$steps" ]; then return 0; fi
    kill -0 "$pid" 2>/dev/null || fail "$name ended before the signal: $(cat "$W/$name.err")"
    sleep 0.1
  done
  fail "$name logged no $steps steps in 60 s"
}

for sig in TERM INT; do
  want=$([ $sig = TERM ] && echo 143 || echo 130)
  name=sig$sig
  start_run $name 12
  kill -$sig $pid
  rc=0; wait $pid || rc=$?
  [ $rc = "$want" ] || fail "SIG$sig: exit $rc, expected $want; stderr: $(tail -3 "$W/$name.err")"
  grep -q "last.h5 resumes the run" "$W/$name.err" || fail "SIG$sig: no message naming last.h5: $(tail -3 "$W/$name.err")"
  ls "$W/$name"/*.tmp-* >/dev/null 2>&1 && fail "SIG$sig: a temporary file was left: $(ls "$W/$name")"
  read -r _ step _ < <("$DIGEST" "$W/$name/last.h5") || fail "SIG$sig: last.h5 does not load"
  [ "$step" -ge 12 ] || fail "SIG$sig: last.h5 is at step $step, the run had logged 12"
  echo "SIG$sig: exit $rc, last.h5 at step $step loads"
done

# Resume the SIGTERM run 13 steps further; the same steps straight through must match it.
step=$("$DIGEST" "$W/sigTERM/last.h5" | awk '{print $2}')
end=$((step + 13))
"$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set run.name=sigTERM --set schedule.max_steps=$end \
  --resume "$W/sigTERM/last.h5" >/dev/null 2>"$W/resume.err" || fail "resume failed: $(tail -3 "$W/resume.err")"
"$TPSC" train "$HERE/tiny.ini" "${common[@]}" --set run.name=straight --set schedule.max_steps=$end \
  >/dev/null 2>"$W/straight.err" || fail "straight run failed: $(tail -3 "$W/straight.err")"
a=$("$DIGEST" "$W/sigTERM/last.h5") b=$("$DIGEST" "$W/straight/last.h5")
[ "$a" = "$b" ] || fail "resumed ($a) and straight ($b) runs differ"
echo "resumed from step $step to $end: bit-identical to the straight run ($a)"

# A second signal exits at once. Stopped, the run receives SIGINT and SIGTERM together; on
# SIGCONT the first handled one asks for a stop, the other quits at once (143 or 130), before
# any step boundary could write the checkpoint.
# The run's status comes from the sh around it, not from bash's `wait`: under job control bash
# records the stop, and `wait` may then report the job as stopped (147) after it has ended.
start_run second 4 "$W/second.rc"
kill -STOP $pid
kill -INT $pid
kill -TERM $pid
kill -CONT $pid
for _ in $(seq 300); do [ -s "$W/second.rc" ] && break; sleep 0.1; done
[ -s "$W/second.rc" ] || fail "second signal: the run did not end within 30 s"
rc=$(cat "$W/second.rc")
case $rc in 130|143) ;; *) fail "second signal: exit $rc, expected 143 or 130" ;; esac
grep -q "last.h5 resumes the run" "$W/second.err" && fail "second signal: the run waited for the step boundary"
echo "second signal: exit $rc at once"
echo "preempt: all checks passed"
