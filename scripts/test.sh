#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test, then runs the
# whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer, then a ThreadSanitizer
# subset (scripts/tsan.sh), then every fuzz
# harness for a short time on its committed corpus (scripts/fuzz.sh). Exits non-zero when any
# test or harness fails. CI (.ci/run) runs exactly this.
#   bash scripts/test.sh [--fast]     (--fast: skip the sanitizer, TSan and fuzz passes)
# TPSC_FUZZ_SECONDS (default 30) is the time per harness.
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZE=--sanitize
for a in "$@"; do
  case "$a" in
    --fast) SANITIZE= ;;
    *) echo "test.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh $SANITIZE
# libgomp's default spin-wait makes OpenMP threads fight Criterion's workers for 2 cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
JOBS=$(nproc 2>/dev/null || echo 2)
echo "== tests (Release)"
ctest --test-dir build --output-on-failure -j"$JOBS"
if [ -n "$SANITIZE" ]; then
  echo "== tests (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS"
fi
if [ -n "$SANITIZE" ]; then
  echo "== ThreadSanitizer (scripts/tsan.sh: shared libtpsinfer model, trainer step, loader)"
  bash scripts/tsan.sh
fi
if [ -n "$SANITIZE" ]; then
  echo "== fuzz smoke (${TPSC_FUZZ_SECONDS:-30} s per harness, two at a time)"
  FUZZ_JOBS=2 FUZZ_REPLAY=1 bash scripts/fuzz.sh 1
  FUZZ_JOBS=2 FUZZ_NEW=report bash scripts/fuzz.sh "${TPSC_FUZZ_SECONDS:-30}"
fi
