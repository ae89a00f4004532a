#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test.
# Exits non-zero when any test fails. CI (.ci/run) runs exactly this.
#   bash scripts/test.sh [--sanitize]   (--sanitize: run the suite again under ASan/UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"
# Tests pin their own thread counts where it matters; keep OpenBLAS from oversubscribing.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --test-dir build --output-on-failure -j2
if [ -d build-asan ] && [[ " $* " == *" --sanitize "* ]]; then
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j2
fi
