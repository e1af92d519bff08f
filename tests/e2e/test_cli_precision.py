"""A study with precision = "auto" killed (kill -9) mid-population and run again where
"auto" would now choose otherwise: it goes on in the precision its first start chose, and
ends as the uninterrupted study whose file names that precision, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from test_cli_study import _epochs_recorded, finished, write_study

pytestmark = pytest.mark.e2e

# reglab's CLI with "auto" made to choose $REGLAB_TEST_AUTO (the choice of a machine where
# bfloat16 pays, then of one where it does not)
LAUNCHER = """
import os, sys
from reglab.study import precision
chosen = os.environ["REGLAB_TEST_AUTO"]
precision.choose = lambda device="cpu", threads=None: precision.Choice(chosen, "test launcher")
from reglab.cli import main
sys.exit(main())
"""


def command(study, out):
    return [sys.executable, "-c", LAUNCHER, "run", str(study), "--out", str(out), "--quiet",
            "--no-report"]


def test_a_killed_auto_study_resumes_in_the_precision_it_began_in(tmp_path):
    study = write_study(tmp_path, epochs=16)
    text = study.read_text()
    study.write_text(text.replace("batch_size = 16", 'batch_size = 16\nprecision = "auto"'))
    fixed = tmp_path / "bfloat16.toml"
    fixed.write_text(text.replace("batch_size = 16", 'batch_size = 16\nprecision = "bfloat16"'))
    subprocess.run([sys.executable, "-m", "reglab.cli", "run", str(fixed), "--out",
                    str(tmp_path / "reference"), "--quiet", "--no-report"], check=True,
                   stdout=subprocess.DEVNULL)
    expected = finished(tmp_path / "reference")

    out = tmp_path / "killed"
    child = subprocess.Popen(command(study, out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             env={**os.environ, "REGLAB_TEST_AUTO": "bfloat16"})
    deadline = time.monotonic() + 120
    while max(_epochs_recorded(out).values(), default=0) < 3:
        assert child.poll() is None, "the study ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    rerun = subprocess.run(command(study, out), capture_output=True, text=True,
                           env={**os.environ, "REGLAB_TEST_AUTO": "float32"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "precision auto: bfloat16 (as chosen at the study's first start, kept on resuming)" \
        in rerun.stdout
    assert "go on from their last complete epoch" in rerun.stdout
    assert finished(out) == expected
    with sqlite3.connect(out / "study.db") as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(meta["precision"]) == "bfloat16"
    assert json.loads(meta["precision_reason"]) == "test launcher"
