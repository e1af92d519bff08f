#!/usr/bin/env bash
# Sets up (idempotent) and runs the default test suite (slow and GPU tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report's test opens report.html in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "warning: chromium could not be installed; the browser test will fail on CI" >&2
fi
.venv/bin/python -m pytest -q "$@"
