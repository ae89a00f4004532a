#!/usr/bin/env bash
# The ThreadSanitizer pass (docs/reliability.md, "Threads"): builds build-tsan/ with
# -DTPSC_SANITIZE=thread and runs, failing on any report:
#   - one libtpsinfer model shared by 4 threads, each with its own workspace, at once
#     (tests/reliability/infer_threads.c, on the committed dtps and dense inference files);
#   - the trainer's step: a 10-step `tpsc train` of the tiny dTPS recipe with 2 data-loader
#     workers decoding and augmenting alongside it, its evaluation and checkpoint write;
#   - the loader: bench_data (imagefolder JPEGs and Fashion-MNIST, 1 and 2 workers).
# Criterion cannot start under TSan (Snaipe/Criterion#274), hence plain programs. OpenMP regions
# run with one thread (OMP_NUM_THREADS=1): Debian's libgomp, which OpenBLAS and oneDNN are
# linked to, is not instrumented, so TSan cannot see its barriers and would report every
# access on either side of one. No suppressions are used.
#   bash scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTPSC_SANITIZE=thread "${launcher[@]}" >/dev/null
cmake --build build-tsan -j"$JOBS" --target tpsc infer_threads bench_data >/dev/null

export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
W=$(mktemp -d /tmp/tpsc_tsan_XXXXXX)
trap 'rm -rf "$W"' EXIT
failed=0
run() {
  local what=$1; shift
  if "$@" >"$W/log" 2>&1; then echo "tsan: $what: no reports"; return 0; fi
  echo "tsan: $what: FAILED (exit $?)"
  grep -m1 -A30 "WARNING: ThreadSanitizer" "$W/log" || tail -20 "$W/log"
  failed=1
}
for model in dtps_infer dense_infer; do
  run "libtpsinfer, one $model model, 4 threads" build-tsan/tests/infer_threads tests/fuzz/corpus/infer_model/$model.h5 4 3
done
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  run "tpsc train, 10 steps, 2 loader workers" build-tsan/tpsc train tests/reliability/tiny.ini --quiet \
    --set "run.out_dir=$W" --set schedule.max_steps=10
else
  echo "tsan: tpsc train skipped (dataset-fashion-mnist not installed)"
fi
run "the data loader (bench_data)" build-tsan/bench/bench_data 0.3
exit $failed
