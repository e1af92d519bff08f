#!/usr/bin/env bash
# The device checks, in one call (issue 10): GPU tests, the population benchmark with
# --device cuda at P = 1, 45, 450 and batch 32/128, and the tutorial study with --device cuda.
# Meant to finish in under 8 minutes on a recent data-centre GPU.
#
# From the repo root of a copy of this working tree on a CUDA machine without internet:
#   bash scripts/device_check.sh
# What must travel, and how, is as for scripts/device_cnn.sh (Fashion-MNIST in .data/, named
# in the call's carry list; missing wheels in .whl/). A device call (the `run` tool):
#   command "bash scripts/device_check.sh", timeout_s 600, carry [".data"].
#
# Knobs: OUT (default runs/device_out), CHECK_DEVICE (cuda; cpu only to try the script
# elsewhere), BENCH_FRACTION (default 0.25 of an epoch per timing), STUDY_EPOCHS (default: the
# study file's), STUDY_TIMEOUT_S (default 200; the steps
# are capped at 60 + 270 + 200 s to end inside a 600 s call), PYTHON.
# $OUT receives check.log (everything), bench.txt, study_table.txt and study.db.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/runs/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${CHECK_DEVICE:-cuda}
FRACTION=${BENCH_FRACTION:-0.25}
exec > >(tee -a "$OUT/check.log") 2>&1
TEE_PID=$!
finish() { exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null; exit "$1"; }

echo "== device_check.sh $(date -u +%FT%TZ) on $(hostname), device $DEVICE"
source "$ROOT/scripts/device_prelude.sh"
STATUS=0
step() { echo; echo "== $1 ($(date -u +%T))"; }

step "GPU tests: pytest -m gpu"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 60 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/gpu || STATUS=1
else
  echo "pytest missing: carry its wheel in .whl/ (see scripts/device_cnn.sh)"; STATUS=1
fi

step "benchmark: P = 1, 45, 450 at batch 32 and 128, fraction $FRACTION, float32 and bfloat16"
timeout 270 "$PY" benchmarks/population.py --device "$DEVICE" --populations 1 45 450 \
  --batches 32 128 --fraction "$FRACTION" --repeats 1 --no-keras | tee "$OUT/bench.txt" \
  || STATUS=1

step "the tutorial study: reglab run examples/tutorial.toml --device $DEVICE"
EPOCH_FLAG=()
[ -n "${STUDY_EPOCHS:-}" ] && EPOCH_FLAG=(--epochs "$STUDY_EPOCHS")
START=$(date +%s)
timeout --signal=TERM --kill-after=20 "${STUDY_TIMEOUT_S:-200}" "$PY" -m reglab.cli run \
  examples/tutorial.toml --device "$DEVICE" --out /tmp/reglab_tutorial --quiet --no-report \
  "${EPOCH_FLAG[@]}" | tee "$OUT/study_table.txt" || STATUS=1
echo "study wall time: $(( $(date +%s) - START )) s"
if [ -f /tmp/reglab_tutorial/study.db ]; then  # one self-contained copy (WAL folded in)
  "$PY" -c "import sqlite3, sys; out = sqlite3.connect(sys.argv[2]); \
sqlite3.connect(sys.argv[1]).backup(out); out.close()" /tmp/reglab_tutorial/study.db "$OUT/study.db"
fi
echo "== done: status $STATUS"
finish "$STATUS"
