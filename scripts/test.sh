#!/usr/bin/env bash
# Sets up (idempotent) and runs the default test suite (slow and GPU tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
