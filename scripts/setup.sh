#!/usr/bin/env bash
# Set up everything the suite needs in ./.venv: torch, mmcv (built once, cached), the project and its extras.
# Idempotent: a stamp of the inputs makes a second run return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
pin() { grep -E "^$1==" constraints.txt; }  # the project's pins live in constraints.txt
TORCH_SPEC=${TORCH_SPEC:-"$(pin torch) $(pin torchvision)"}
stamp="$VENV/.setup-stamp"
want=$(cat pyproject.toml constraints.txt requirements.lock scripts/setup.sh scripts/build_mmcv.sh | sha1sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "[setup] ERROR: Python >= 3.10 is needed; set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "[setup] installing build tools and $TORCH_SPEC into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt setuptools wheel ninja
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $TORCH_SPEC
PY="$VENV/bin/python" bash scripts/build_mmcv.sh
echo "[setup] installing sema-bench and its extras, at the versions of requirements.lock"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -c requirements.lock -e ".[all]"
echo "$want" > "$stamp"
echo "[setup] done"
