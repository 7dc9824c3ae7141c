#!/usr/bin/env bash
# Regenerate requirements.lock: every dependency of sema-bench with all its extras, for the supported Python
# (the one of .venv, 3.11), resolved by pip-tools' pip-compile within constraints.txt's pins. setup.sh and the
# Docker image install exactly these versions. Run after changing pyproject.toml or constraints.txt:
#   bash scripts/lock.sh          (needs `make setup` first: mmcv's metadata comes from its cached wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m pip install -q -c constraints.txt pip-tools
mmcv_wheels=$(dirname "$(ls "${SEMA_CACHE_DIR:-$HOME/.cache/sema-bench}"/wheels/mmcv-*/mmcv-*.whl | head -n 1)")
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$PY" -m piptools compile --quiet --extra all --constraint constraints.txt --find-links "$mmcv_wheels" \
  --no-emit-index-url --no-emit-find-links --unsafe-package sema-bench --strip-extras \
  --output-file requirements.lock pyproject.toml
echo "[lock] wrote requirements.lock ($(grep -c '^[a-zA-Z0-9]' requirements.lock) packages)"
