#!/usr/bin/env bash
# Build mmcv (with its compiled ops) once and cache the wheel outside the checkout.
#
# PyPI has no mmcv wheel for current torch, and mmdet 3.3 needs mmcv < 2.2, so we build the 2.1.0 sdist
# against the installed torch. Its setup.py imports torch (hence --no-build-isolation) and asks for
# C++14/17, which torch >= 2.10's headers reject, so the flags are raised to C++20 first.
# The cache key is (mmcv, torch, Python, CUDA or cpu): a second run installs the cached wheel in seconds.
# FORCE_CUDA=1 builds the CUDA ops without a GPU present (the Docker image does that).
set -euo pipefail

PY=$(realpath -s "${PY:-.venv/bin/python}")
MMCV_VERSION=${MMCV_VERSION:-$(sed -n 's/^mmcv==//p' "$(dirname "$0")/../constraints.txt")}
CACHE_ROOT=${SEMA_CACHE_DIR:-$HOME/.cache/sema-bench}

key=$("$PY" - <<PYEOF
import os, sys, torch
cuda = torch.version.cuda if torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1" else None
print(f"mmcv-$MMCV_VERSION-torch{torch.__version__.split('+')[0]}-cp{sys.version_info[0]}{sys.version_info[1]}-{'cu' + cuda.replace('.', '') if cuda else 'cpu'}")
PYEOF
)
cache="$CACHE_ROOT/wheels/$key"

# Parallel compile jobs: one per core, but no more than the memory allows. A CUDA compile job of mmcv peaks near
# 3 GB (measured with nvcc 13.0 for sm_90), so 8 jobs need ~24 GB and get killed on smaller machines.
jobs_for_memory() {
  local kb cores
  kb=$(awk '/^MemAvailable:/ {print $2}' "${MEMINFO:-/proc/meminfo}" 2>/dev/null || echo 0)
  cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys both
  local by_memory=$(( kb / (3 * 1024 * 1024) ))
  (( by_memory < 1 )) && by_memory=1
  echo $(( by_memory < cores ? by_memory : cores ))
}

if ! ls "$cache"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[setup] building mmcv $MMCV_VERSION from source ($key); this takes about 25 minutes on 2 cores, once."
  for tool in gcc g++; do
    command -v "$tool" >/dev/null || { echo "[setup] ERROR: $tool not found. Install a C++20 compiler (Debian: apt-get install build-essential) and re-run." >&2; exit 1; }
  done
  "$PY" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || { echo "[setup] ERROR: Python headers (Python.h) are missing. Install them (Debian: apt-get install python3-dev) and re-run." >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  tar xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
  jobs=${MAX_JOBS:-$(jobs_for_memory)}
  echo "[setup] compiling with $jobs parallel jobs (MAX_JOBS; each CUDA compile job can take ~3 GB)"
  if ! (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=$jobs \
        "$PY" -m pip wheel --no-deps --no-build-isolation -w "$work/dist" . >"$work/build.log" 2>&1); then
    tail -n 40 "$work/build.log" >&2
    echo "[setup] ERROR: building mmcv failed (log above). It needs g++ with C++20 support (g++ >= 10) and the" >&2
    echo "        Python headers; on Debian: apt-get install build-essential python3-dev. Then re-run." >&2
    exit 1
  fi
  mkdir -p "$cache"
  cp "$work"/dist/mmcv-*.whl "$cache/"
fi

"$PY" -m pip install --quiet --no-deps "$cache"/mmcv-*.whl
echo "[setup] mmcv from $cache"
