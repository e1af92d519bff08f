#!/usr/bin/env bash
# Sets up reglab on a fresh machine: Debian's Fashion-MNIST, a virtualenv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
# A C compiler builds reglab's native kernels on first use (reglab/native; without one the
# torch path runs, slower).
if ! command -v cc >/dev/null && ! command -v gcc >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq gcc libc6-dev >/dev/null \
    || echo "warning: no C compiler; reglab's native kernels will not be built" >&2
fi
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pyproject.toml declares the torch range reglab supports; constraints.txt pins the CPU build
# that these machines carry (an unpinned torch would pull a multi-GB CUDA build).
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import reglab, torch; print('reglab', reglab.__version__, 'torch', torch.__version__)"
