#!/usr/bin/env bash
# The device checks, in one call (issue 10): GPU tests, the population benchmark with
# --device cuda at P = 1, 45, 450 and batch 32/128, the tutorial study with --device cuda, and
# (issue 13) the tuning benchmark with --device cuda. Meant to finish in under 8 minutes on a
# recent data-centre GPU (each step is capped: 45 s GPU tests, 150 s benchmark, 240 s study, 90 s tuning, 30 s for
# a profile of one population epoch at P = 450 with cProfile and torch.profiler).
#
# From the repo root of a copy of this working tree on a CUDA machine without internet:
#   bash scripts/device_check.sh
# What must travel, and how, is as for scripts/device_cnn.sh (Fashion-MNIST in .data/, named
# in the call's carry list; missing wheels in .whl/). A device call (the `run` tool):
#   command "bash scripts/device_check.sh", timeout_s 600, carry [".data", ".whl"].
#
# What the tuning step needs beyond the image's packages (optuna and its alembic, sqlalchemy,
# colorlog, mako; cmaes) travels as wheels in .whl/, carried too.
#
# Knobs: OUT (default runs/device_out), CHECK_DEVICE (cuda; cpu only to try the script
# elsewhere), BENCH_FRACTION (default 0.05 of an epoch per timing), BENCH_TIMEOUT_S (150),
# BENCH_POPULATIONS ("1 45 450"), BENCH_PRECISIONS ("float32 float16": float16 is the CUDA policy; the study step runs bfloat16),
# STUDY_EPOCHS (default: the study file's), STUDY_TIMEOUT_S (240), TUNE_TIMEOUT_S (90; 0
# skips the step), PROFILE_TIMEOUT_S (30; 0 skips it), TUNE_TRIALS (24), TUNE_EPOCHS (3), PYTHON.
# $OUT receives check.log (everything), bench.txt, study_table.txt, study_show.txt, tune.txt
# and profile.txt.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/runs/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${CHECK_DEVICE:-cuda}
FRACTION=${BENCH_FRACTION:-0.05}
exec > >(tee -a "$OUT/check.log") 2>&1
TEE_PID=$!
finish() { exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null; exit "$1"; }

echo "== device_check.sh $(date -u +%FT%TZ) on $(hostname), device $DEVICE"
source "$ROOT/scripts/device_prelude.sh"
STATUS=0
step() { echo; echo "== $1 ($(date -u +%T))"; }

step "GPU tests: pytest -m gpu"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 45 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/gpu || STATUS=1
else
  echo "pytest missing: carry its wheel in .whl/ (see scripts/device_cnn.sh)"; STATUS=1
fi

POPULATIONS=${BENCH_POPULATIONS:-1 45 450}
PRECISIONS=${BENCH_PRECISIONS:-float32 float16}
step "benchmark: P = $POPULATIONS at batch 32 and 128, fraction $FRACTION, $PRECISIONS"
# shellcheck disable=SC2086  # the lists split into arguments
timeout "${BENCH_TIMEOUT_S:-150}" "$PY" benchmarks/population.py --device "$DEVICE" \
  --populations $POPULATIONS --batches 32 128 --fraction "$FRACTION" --repeats 1 --no-keras \
  --precisions $PRECISIONS | tee "$OUT/bench.txt" \
  || STATUS=1

step "the tutorial study: reglab run examples/tutorial.toml --device $DEVICE"
EPOCH_FLAG=()
[ -n "${STUDY_EPOCHS:-}" ] && EPOCH_FLAG=(--epochs "$STUDY_EPOCHS")
START=$(date +%s)
timeout --signal=TERM --kill-after=20 "${STUDY_TIMEOUT_S:-240}" "$PY" -m reglab.cli run \
  examples/tutorial.toml --device "$DEVICE" --out /tmp/reglab_tutorial --quiet --no-report \
  "${EPOCH_FLAG[@]}" | tee "$OUT/study_table.txt" || STATUS=1
echo "study wall time: $(( $(date +%s) - START )) s"
if [ -f /tmp/reglab_tutorial/study.db ]; then
  # the table of what finished, also after a timeout (the store itself, with every run's
  # kernels, is over the 16 MB a returned file may have)
  "$PY" -m reglab.cli show /tmp/reglab_tutorial > "$OUT/study_show.txt" 2>&1 || STATUS=1
fi

TUNE_S=${TUNE_TIMEOUT_S:-90}
if [ "$TUNE_S" -gt 0 ]; then
  step "tuning: benchmarks/tune.py --device $DEVICE (a population at a time vs one trial at a time)"
  if has optuna; then
    timeout --signal=TERM --kill-after=10 "$TUNE_S" "$PY" benchmarks/tune.py --device "$DEVICE" \
      --trials "${TUNE_TRIALS:-24}" --epochs "${TUNE_EPOCHS:-3}" | tee "$OUT/tune.txt" || STATUS=1
  else
    echo "optuna missing: carry it and its dependencies as wheels in .whl/"; STATUS=1
  fi
fi
PROFILE_S=${PROFILE_TIMEOUT_S:-30}
if [ "$PROFILE_S" -gt 0 ]; then
  step "profile: one population epoch at P = 450, batch 128 (a tenth of the data)"
  timeout "$PROFILE_S" "$PY" benchmarks/population.py --device "$DEVICE" --populations 450 \
    --batches 128 --fraction 0.1 --profile > "$OUT/profile.txt" 2>&1 || STATUS=1
  head -c 3000 "$OUT/profile.txt"; echo "(the whole profile in profile.txt)"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,temperature.gpu \
  --format=csv,noheader
echo "== done: status $STATUS"
finish "$STATUS"
