#!/usr/bin/env bash
# Installs the Debian packages tpsc needs (only those missing), then configures and builds.
#   bash scripts/setup.sh [--sanitize] [--reference]
#     --sanitize   also build build-asan/ with AddressSanitizer + UBSan
#     --reference  also install python3-torch and python3-h5py, to regenerate test fixtures
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git
      libopenblas-openmp-dev libhdf5-dev libstb-dev libcriterion-dev libinih-dev zlib1g-dev libdnnl-dev
      openmpi-bin libopenmpi-dev
      dataset-fashion-mnist gnuplot-nox)
SANITIZE=0
for a in "$@"; do
  case "$a" in
    --sanitize) SANITIZE=1; PKGS+=(clang libclang-rt-14-dev libomp-14-dev) ;; # the fuzz harnesses
    --reference) PKGS+=(python3-torch python3-h5py python3-numpy) ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
if [ $SANITIZE = 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTPSC_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$JOBS"
fi
