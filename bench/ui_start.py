"""``ktsweep ui``: how long until MLflow's UI answers, and what its server costs, with and without
MLflow's job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``; ktsweep turns it off by default).

    .venv/bin/python bench/ui_start.py [--reps 3] [--settle 10]
Each run is ``ktsweep ui --port P`` in a fresh empty folder (a new local store), the two
variants alternating. Reports the seconds until ``/health`` answers, then, ``--settle``
seconds later, the processes under ``ktsweep ui`` and their summed RSS.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

KTSWEEP = str(Path(sys.executable).with_name("ktsweep"))
VARIANTS = {"without jobs (default)": "false", "with jobs (MLflow's default)": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree(pid: int) -> tuple[int, float]:
    """How many processes descend from ``pid`` (itself included) and their RSS in MB."""
    rows = [line.split() for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True,
                                                     text=True).stdout.splitlines()]
    members, frontier = {str(pid)}, {str(pid)}
    while frontier:
        frontier = {row[0] for row in rows if row[1] in frontier} - members
        members |= frontier
    return len(members), sum(int(row[2]) for row in rows if row[0] in members) / 1024


def one_run(jobs: str, settle: float) -> tuple[float, int, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs}
        started = time.perf_counter()
        proc = subprocess.Popen([KTSWEEP, "ui", "--port", str(port)], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - started > 180:
                        raise SystemExit(f"ktsweep ui did not come up (exit code {proc.poll()})")
                    time.sleep(0.1)
            up = time.perf_counter() - started
            time.sleep(settle)
            count, rss = tree(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # ktsweep ui stops its server's own process group
            proc.wait(60)
    return up, count, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after /health before counting")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in VARIANTS}
    for rep in range(args.reps):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            up, count, rss = one_run(VARIANTS[name], args.settle)
            runs[name].append((up, count, rss))
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  rep {rep} {name}: up after {up:.1f} s, {count} processes, {rss:.0f} MB; load {load}", flush=True)
    print("\n| `ktsweep ui` | up after (s, median) | processes | RSS (MB, median) |\n|---|---|---|---|")
    for name, results in runs.items():
        print(f"| {name} | {statistics.median(r[0] for r in results):.1f} | "
              f"{statistics.median(r[1] for r in results):.0f} | {statistics.median(r[2] for r in results):.0f} |")


if __name__ == "__main__":
    main()
