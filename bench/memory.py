"""Memory over a long sweep: RSS of the driver and of each worker, per 10 trials.

    .venv/bin/python bench/memory.py [--trials 100]
Workers report their RSS with every trial (MLflow tag ``ktsweep.worker.rss_mb``);
the driver's RSS is sampled by a thread. Growth is measured after trial 10, when
TensorFlow and the first graphs are warm.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    from omegaconf import OmegaConf

    from ktsweep.search.config import compose, validate
    from ktsweep.search.records import find_runs
    from ktsweep.search.sweep import run_sweep

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), rss_mb(os.getpid())))
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory() as root:
        overrides = [o for o in CASES["overhead"] if not o.startswith("sweep.max_trials")]
        cfg = compose([f"sweep.root={root}", f"sweep.max_trials={args.trials}", "tracking.register=false", *overrides])
        outcome = run_sweep(validate(cfg), resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True))
        done.set()
        from mlflow import MlflowClient

        client = MlflowClient(outcome.tracking_uri)
        runs = sorted(find_runs(client, outcome.experiment_id, sweep=outcome.name, kind="trial"),
                      key=lambda r: r.info.end_time or 0)
    by_worker: dict[str, list[float]] = defaultdict(list)
    ends = []
    for run in runs:
        tags = run.data.tags
        by_worker[tags["ktsweep.worker.pid"]].append(float(tags["ktsweep.worker.rss_mb"]))
        ends.append(run.info.end_time / 1000)
    print(f"{len(runs)} trials, {len(by_worker)} worker processes")
    print("\n| after trial | driver RSS (MB) | " + " | ".join(f"worker {i + 1} RSS (MB)" for i in range(len(by_worker))) + " |")
    print("|---" * (2 + len(by_worker)) + "|")
    counts = {pid: 0 for pid in by_worker}
    for index, end in enumerate(ends, start=1):
        pid = runs[index - 1].data.tags["ktsweep.worker.pid"]
        counts[pid] += 1
        if index % 10 == 0:
            driver = max((mb for t, mb in samples if t <= end), default=float("nan"))
            workers = [f"{by_worker[p][min(counts[p], len(by_worker[p])) - 1]:.0f}" for p in by_worker]
            print(f"| {index} | {driver:.0f} | " + " | ".join(workers) + " |")
    driver_10 = max(mb for t, mb in samples if t <= ends[9])
    driver_end = max(mb for t, mb in samples if t <= ends[-1])  # during the trials, not the close
    print(f"\ndriver growth after trial 10: {100 * (driver_end / driver_10 - 1):+.1f}%")
    for i, (pid, series) in enumerate(by_worker.items(), start=1):
        k = min(len(series), max(1, len(series) * 10 // len(runs)))
        print(f"worker {i} growth after its trial {k}: {100 * (series[-1] / series[k - 1] - 1):+.1f}%")


if __name__ == "__main__":
    main()
