#!/usr/bin/env bash
# Install Debian's Chromium for the dashboard's end-to-end test (tests/test_dashboard_e2e.py) and
# scripts/screenshot.py, which drive it through Playwright (never `playwright install`: no browser download).
# Idempotent, and a no-op (exit 0) where it cannot act: Chromium already there, not root, or no apt-get.
# The test skips itself, saying why, wherever Chromium is missing.
set -euo pipefail

for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[chromium] not installed and cannot install it here (needs root and apt-get); the browser test will skip" >&2
  exit 0
fi
echo "[chromium] installing Debian's chromium package for the dashboard's browser test"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
  echo "[chromium] apt-get could not install chromium; the browser test will skip" >&2
fi
