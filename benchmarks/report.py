"""How long `reglab report DIR` takes, each time in a fresh process (as a user runs it).

    python benchmarks/report.py runs/tutorial [--repeats 5]

DIR is a finished study (README's main job writes runs/tutorial). Prints each wall time and the
median; the target for the tutorial study's 135 runs is 10 s.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (args.directory / "study.db").is_file():
        sys.exit(f"{args.directory}: expected a study directory with study.db. "
                 "Run `reglab run examples/tutorial.toml` first.")
    command = [sys.executable, "-m", "reglab.cli", "report", str(args.directory)]
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    with sqlite3.connect(args.directory / "study.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    print(f"{runs} runs; report wall times: " + ", ".join(f"{t:.2f}s" for t in times))
    print(f"median {statistics.median(times):.2f} s (target: 10 s)")


if __name__ == "__main__":
    main()
