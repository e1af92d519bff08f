#!/usr/bin/env bash
# Runs the CNN study (examples/cnn.toml) on a CUDA machine and reports to stdout and $OUT.
#
# Meant for a GPU machine with no internet that has python3 with torch and numpy, from the repo
# root of a copy of this working tree:  bash scripts/device_cnn.sh [extra `reglab run` options]
#   e.g. bash scripts/device_cnn.sh --epochs 10 --seeds 2   (a shorter run)
#
# What must travel with the tree:
#   * Fashion-MNIST's four IDX .gz files in .data/fashion-mnist/ at the repo root (~30 MB).
#     Create them here with:  mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/
#     (/usr/share/datasets/fashion-mnist comes from `apt-get install dataset-fashion-mnist`).
#     reglab finds them through $REGLAB_DATA_DIR (src/reglab/datasets/sources.py), which this
#     script sets to .data. .data is untracked; to keep it out of commits, run
#     `echo /.data/ >> .git/info/exclude` and name ".data" in the device call's carry list.
#   * Nothing else is installed: reglab runs from src/ (PYTHONPATH=src python3 -m reglab.cli).
#     If a runtime dependency of pyproject.toml is missing there (the script lists them), carry
#     it as wheels in .whl/ (also excluded in .git/info/exclude and carried), downloaded here with
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux2014_x86_64 -d .whl scipy    (or click, ...)
#     and this script installs them into /tmp/site before running.
#
# A device call (the `run` tool): command `bash scripts/device_cnn.sh`, timeout_s 600, carry
# [".data"] (once .data is excluded as above; untracked and not ignored, it travels anyway).
# The whole study should take a few minutes on one GPU (4 populations x 20 epochs x 391 steps;
# not measured yet). If it outlasts CNN_TIMEOUT_S, it stops cleanly and a second call within the
# machine's warm period resumes it; or pass `--epochs 10` for a shorter study.
#
# Environment knobs: OUT (where results go; default runs/device_out), CNN_TIMEOUT_S (the study
# is interrupted after this many seconds so that the summary and copies still happen; default
# 480, for a 600 s command limit), CNN_WORK (the study directory; default /tmp/reglab_cnn; a
# second call on the same machine resumes it), STUDY (default examples/cnn.toml), PYTHON.
#
# $OUT receives at most 6 files: device_cnn.log (this script's stdout), progress.log (the
# progress bars), table.txt, study.db (SQLite, WAL folded in; every epoch of every run),
# report.html (every plot embedded). The study itself runs in CNN_WORK, not $OUT, because its
# plots/*.png would exceed the number of files a device call brings back.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/runs/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
STUDY=${STUDY:-examples/cnn.toml}
WORK=${CNN_WORK:-/tmp/reglab_cnn}
BUDGET=${CNN_TIMEOUT_S:-480}
DEVICE=${CNN_DEVICE:-cuda}   # cpu only to try this script out elsewhere
exec > >(tee -a "$OUT/device_cnn.log") 2>&1
TEE_PID=$!
finish() { exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null; exit "$1"; }  # let tee drain first

echo "== device_cnn.sh $(date -u +%FT%TZ) on $(hostname): $STUDY -> $WORK (budget ${BUDGET}s)"

# environment, GPU name, carried wheels, dependencies, torch/CUDA, data: shared with
# scripts/device_check.sh
source "$ROOT/scripts/device_prelude.sh"

# -- the study -----------------------------------------------------------------------------------
RUN_FLAGS=(--device "$DEVICE" --out "$WORK")
has tqdm || { RUN_FLAGS+=(--quiet); echo "note: tqdm missing -> --quiet (no progress bars)"; }
if ! has matplotlib || ! has jinja2; then
  RUN_FLAGS+=(--no-report); echo "note: matplotlib or jinja2 missing -> --no-report"
fi
has scipy || echo "note: scipy missing -> reglab's results table (its statistics) will fail;" \
  "the plain summary below still prints"
mkdir -p "$WORK"
"$PY" -m reglab.cli validate "$STUDY" "$@" 2>/dev/null || true  # the plan (ignores run-only flags)
START=$(date +%s.%N)
if has click; then
  echo "== PYTHONPATH=src $PY -m reglab.cli run $STUDY ${RUN_FLAGS[*]} $*"
  # Progress bars (stderr) go to a file; stdout (plan, table) to this log.
  timeout --signal=TERM --kill-after=30 "$BUDGET" \
    "$PY" -m reglab.cli run "$STUDY" "${RUN_FLAGS[@]}" "$@" 2>"$OUT/progress.log"
  RC=$?
else  # no click: the CLI cannot import; drive the same runner through the Python API
  echo "== click missing: running reglab.study.runner.run_study directly ($STUDY, $DEVICE)"
  timeout --signal=TERM --kill-after=30 "$BUDGET" "$PY" - "$STUDY" "$WORK" "$DEVICE" "$@" \
    2>"$OUT/progress.log" <<'EOF'
import sys
from reglab.study.runner import run_study
args, extra = sys.argv[1:4], sys.argv[4:]
options = {k: int(v) for k, v in zip(extra[::2], extra[1::2]) if k in ("--seeds", "--epochs")}
store = run_study(args[0], args[1], options.get("--seeds"), options.get("--epochs"),
                  device=args[2], log=print)
try:
    from reglab.study.report_table import results_table
    print(results_table(store))
except Exception as error:
    print(f"results table unavailable: {type(error).__name__}: {error}")
EOF
  RC=$?
fi
END=$(date +%s.%N)
WALL=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }')
echo "== exit status $RC; wall time ${WALL} s"
case $RC in
  124|137) echo "STOPPED at the ${BUDGET}s budget: finished runs are saved in $WORK; run this" \
                    "script again on the same machine to resume (or raise CNN_TIMEOUT_S).";;
esac
echo "-- last progress lines (stderr) --"
tr '\r' '\n' <"$OUT/progress.log" | grep -v '^\s*$' | grep -v ' 0epoch \[' \
  | awk '/^population/ { key = $2; last[key] = $0; if (!(key in seen)) { seen[key] = 1; order[++n] = key } next }
         { other[++m] = $0 }
         END { for (i = 1; i <= n; i++) print last[order[i]]; for (j = 1; j <= m; j++) print other[j] }' \
  | tail -n 40

# -- results -------------------------------------------------------------------------------------
if [ -f "$WORK/study.db" ]; then
  if has click && has scipy; then
    echo "== reglab show $WORK"
    "$PY" -m reglab.cli show "$WORK" | tee "$OUT/table.txt"
  fi
  echo "== plain summary (stdlib sqlite3: test accuracy per variant; mean val_accuracy by epoch)"
  "$PY" - "$WORK/study.db" "$OUT/study.db" <<'EOF'
import json, sqlite3, statistics, sys
db = sqlite3.connect(sys.argv[1])
runs = db.execute("SELECT run_id, variant, status, epochs_run, best_epoch, metrics, wall_time "
                  "FROM runs ORDER BY seq").fetchall()
by_variant = {}
for run_id, variant, status, epochs_run, best, metrics, wall in runs:
    m = json.loads(metrics or "{}")  # key: the variant with its sweep point, without the seed
    by_variant.setdefault(run_id.rsplit("/seed=", 1)[0], []).append((status, m.get("test_accuracy")))
print(f"{'variant':34s} {'runs':>4s} {'done':>4s} {'mean test acc':>13s} {'sd':>7s}  per seed")
for variant, rows in by_variant.items():
    accs = [a for _, a in rows if a is not None]
    mean = f"{statistics.mean(accs):.4f}" if accs else "-"
    sd = f"{statistics.stdev(accs):.4f}" if len(accs) > 1 else "-"
    print(f"{variant:34s} {len(rows):4d} {len(accs):4d} {mean:>13s} {sd:>7s}  "
          + " ".join(f"{a:.4f}" for a in accs))
curves = {}
for run_id, epoch, metrics in db.execute("SELECT e.run_id, e.epoch, e.metrics FROM epochs e"):
    variant = run_id.rsplit("/seed=", 1)[0]
    value = json.loads(metrics).get("val_accuracy")
    if value is not None:
        curves.setdefault(variant, {}).setdefault(epoch, []).append(value)
for variant, epochs in curves.items():
    line = " ".join(f"{statistics.mean(epochs[e]):.3f}" for e in sorted(epochs))
    print(f"val_acc {variant:34s} {line}")
for key in ("device", "versions", "population_wall_time"):
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row:
        print(f"{key}: {row[0]}")
failed = db.execute("SELECT run_id, error FROM runs WHERE status = 'failed'").fetchall()
if failed:  # `reglab run` exits 0 even when runs fail, and a rerun does not retry them
    print(f"FAILED RUNS: {len(failed)} (rerun with --restart after fixing); first error:")
    print((failed[0][1] or "").strip()[:2000])
# One self-contained copy (WAL folded in) for $OUT.
out = sqlite3.connect(sys.argv[2])
db.backup(out)
out.close()
sys.exit(4 if failed else 0)
EOF
  SUMMARY_RC=$?
  if [ "$RC" -eq 0 ] && [ "$SUMMARY_RC" -ne 0 ]; then RC=$SUMMARY_RC; fi
  SIZE=$(stat -c %s "$OUT/study.db" 2>/dev/null || echo 0)
  if [ "$SIZE" -gt $((15 * 1024 * 1024)) ]; then
    echo "study.db is $SIZE bytes: too big to bring back, removed from \$OUT"; rm -f "$OUT/study.db"
  else
    echo "copied study.db ($SIZE bytes) to $OUT"
  fi
  if [ -f "$WORK/report.html" ] && [ "$(stat -c %s "$WORK/report.html")" -le $((15 * 1024 * 1024)) ]; then
    cp "$WORK/report.html" "$OUT/" && echo "copied report.html to $OUT"
  fi
else
  echo "no $WORK/study.db: the study did not start"
fi
echo "== done: exit status $RC, study wall time ${WALL} s"
finish "$RC"
