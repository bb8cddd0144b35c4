"""A long sweep of trivial trials: memory and per-trial cost per block of trials.

    .venv/bin/python bench/scale.py --trials 1000 [--every 100] [--root DIR] [--profile FILE] [--trace-memory]
    .venv/bin/python bench/scale.py --analyze DIR [--sweep NAME]   # the table from a kept store (also mid-run)

The ``overhead`` case (1 epoch, one small Dense layer, 20% of digits). Per block of
``--every`` trials (in the order they ended): the driver's RSS (sampled by a thread
every 0.5 s), each worker's RSS (workers report it with every trial, MLflow tag
``ktsweep.worker.rss_mb``), the wall time per trial over the block, and the MLflow
writer's backlog (its queue length, sampled with the RSS). ``--root`` keeps the sweep
store (for timing ``ktsweep show/list/report/resume`` on it) and the driver's samples
beside it (``scale-samples.csv``); ``--profile`` writes a cProfile of the driver's main
thread (Ray Tune's loop and its callbacks).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402

NAME = "scale"  # the sweep's name in its store


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


SAMPLES = "scale-samples.csv"  # time, driver RSS (MB), writer backlog: one line per sample, kept as they come


class Sampler:
    """The driver's RSS and the MLflow writer's queue length, every half second, appended to a file."""

    def __init__(self, path: str) -> None:
        from ktsweep.tracking import writer as tracking_writer

        self.writers: list[Any] = []
        original = tracking_writer.TrackingWriter.__init__

        def remember(writer: Any, *args: Any, **kwargs: Any) -> None:
            original(writer, *args, **kwargs)
            self.writers.append(writer)

        tracking_writer.TrackingWriter.__init__ = remember  # the bench's only hook: to read the queue
        self._done = threading.Event()
        self._file = open(path, "a", buffering=1)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._done.is_set():
            backlog = sum(w.queued() for w in self.writers)
            self._file.write(f"{time.time():.3f},{rss_mb(os.getpid()):.1f},{backlog}\n")
            time.sleep(0.5)

    def stop(self) -> None:
        self._done.set()


def read_samples(path: str) -> list[tuple[float, float, int]]:
    samples: list[tuple[float, float, int]] = []
    if not os.path.exists(path):
        return samples
    with open(path) as fh:
        for line in fh:
            t, mb, backlog = line.strip().split(",")
            samples.append((float(t), float(mb), int(backlog)))
    return samples


def between(samples: list[tuple[float, float, int]], start: float, end: float) -> list[tuple[float, float, int]]:
    return [s for s in samples if start < s[0] <= end]


class MemoryTrace:
    """``--trace-memory``: tracemalloc snapshots of the driver after the first block of trials and
    after the last trial (inside the sweep: once it returns, Ray Tune's objects are gone); prints
    the allocations that grew most between them, by where they were made."""

    def __init__(self, first: int, last: int) -> None:
        import tracemalloc

        from ktsweep.tracking.mlflow_callback import MlflowTracking

        tracemalloc.start(8)
        self.first, self.ended, self.snapshots = first, 0, []
        original = MlflowTracking.on_trial_complete

        def counted(tracking: Any, *args: Any, **kwargs: Any) -> None:
            original(tracking, *args, **kwargs)
            self.ended += 1
            if self.ended in (self.first, last):
                self.snapshots.append(tracemalloc.take_snapshot())

        MlflowTracking.on_trial_complete = counted  # the bench's hook: after each trial's bookkeeping

    def report(self, top: int = 16) -> None:
        if len(self.snapshots) < 2:
            return
        stats = self.snapshots[1].compare_to(self.snapshots[0], "traceback")
        print(f"\ndriver's Python allocations, trial {self.first} to {self.ended}: "
              f"{sum(s.size_diff for s in stats) / 2**20:+.1f} MiB; largest growth:")
        for stat in stats[:top]:
            print(f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks, "
                  + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-4:])))


def run(trials: int, root: str, profile: Optional[str]) -> Any:
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.flow import run_sweep

    os.makedirs(root, exist_ok=True)
    sampler = Sampler(os.path.join(root, SAMPLES))
    overrides = [o for o in CASES["overhead"] if not o.startswith("sweep.max_trials")]
    cfg = compose([f"sweep.root={root}", f"sweep.name={NAME}", f"sweep.max_trials={trials}",
                   "tracking.register=false", "sweep.report=false", *overrides])
    config, resolved = validate(cfg), OmegaConf.to_yaml(cfg, resolve=True)
    try:
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            try:
                return profiler.runcall(run_sweep, config, resolved_yaml=resolved)
            finally:
                profiler.dump_stats(profile)
        return run_sweep(config, resolved_yaml=resolved)
    finally:
        sampler.stop()


def trial_runs(root: str, sweep: str = NAME) -> list[Any]:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(root))
    experiment = client.get_experiment_by_name("ktsweep")
    return find_runs(client, experiment.experiment_id, sweep=sweep, kind="trial")


def report(runs: list[Any], samples: list[tuple[float, float, int]], every: int) -> None:
    """Print the per-block table, the growth figures and the run-status check."""
    per_trial = Counter(r.data.tags["ktsweep.trial_id"] for r in runs)
    statuses = Counter(r.info.status for r in runs)
    print(f"{len(runs)} trial runs for {len(per_trial)} trials; statuses {dict(statuses)}; "
          f"trials with more than one run: {sum(n > 1 for n in per_trial.values())}")
    runs = sorted((r for r in runs if r.info.end_time), key=lambda r: r.info.end_time)
    ends = [r.info.end_time / 1000 for r in runs]
    pids = list(dict.fromkeys(r.data.tags["ktsweep.worker.pid"] for r in runs))
    last_rss: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    spans: list[float] = []
    block_start = min(r.info.start_time for r in runs) / 1000
    for index, r in enumerate(runs, start=1):
        last_rss[r.data.tags["ktsweep.worker.pid"]] = float(r.data.tags["ktsweep.worker.rss_mb"])
        spans.append(float(r.data.metrics.get("trial_seconds", float("nan"))))
        if index % every == 0:
            window = between(samples, block_start, ends[index - 1])
            rows.append({
                "trial": index,
                "driver": max((s[1] for s in window), default=float("nan")),
                "workers": [last_rss.get(p, float("nan")) for p in pids],
                "wall": (ends[index - 1] - block_start) / every,
                "span": sorted(spans)[len(spans) // 2],
                "backlog_max": max((s[2] for s in window), default="-"),  # "-": no samples (an older store)
                "backlog_end": window[-1][2] if window else "-",
            })
            block_start, spans = ends[index - 1], []
    print(f"\n{len(pids)} worker processes\n")
    print("| after trial | driver RSS (MB) | " + " | ".join(f"worker {i + 1} RSS (MB)" for i in range(len(pids)))
          + " | wall time per trial (s) | median driver span of a trial (s) | writer backlog: max / at end |")
    print("|---" * (5 + len(pids)) + "|")
    for row in rows:
        workers = " | ".join(f"{mb:.0f}" for mb in row["workers"])
        print(f"| {row['trial']} | {row['driver']:.0f} | {workers} | {row['wall']:.3f} | {row['span']:.3f} "
              f"| {row['backlog_max']} / {row['backlog_end']} |")
    if len(rows) < 2:
        return
    first, last = rows[0], rows[-1]
    print(f"\ndriver RSS growth from trial {first['trial']} to {last['trial']}: "
          f"{100 * (last['driver'] / first['driver'] - 1):+.1f}%")
    for i, (a, b) in enumerate(zip(first["workers"], last["workers"]), start=1):
        print(f"worker {i} RSS growth from trial {first['trial']} to {last['trial']}: {100 * (b / a - 1):+.1f}%")
    if len(rows) >= 3:
        print(f"wall time per trial, trials {rows[-2]['trial']}-{last['trial']} vs "
              f"{first['trial']}-{rows[1]['trial']}: {100 * (last['wall'] / rows[1]['wall'] - 1):+.1f}%")
    print(f"load average at the end: {os.getloadavg()}")


def main(trials: int = 1000, every: int = 100) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=trials)
    parser.add_argument("--every", type=int, default=every, help="trials per row of the table")
    parser.add_argument("--root", help="keep the sweep store here (default: a temporary folder)")
    parser.add_argument("--profile", help="write a cProfile of the driver's main thread to this file")
    parser.add_argument("--trace-memory", action="store_true",
                        help="tracemalloc in the driver (slows it): what grew between the first block and the end")
    parser.add_argument("--analyze", metavar="ROOT", help="no sweep: the table from the store a --root run kept")
    parser.add_argument("--sweep", default=NAME, help="with --analyze: the sweep's name (another long sweep's store)")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    if args.analyze:
        report(trial_runs(args.analyze, args.sweep), read_samples(os.path.join(args.analyze, SAMPLES)), args.every)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        trace = MemoryTrace(args.every, args.trials) if args.trace_memory else None
        outcome = run(args.trials, root, args.profile)
        if trace:
            trace.report()
        print(f"sweep wall time {outcome.wall_seconds:.0f} s, status {outcome.status}")
        report(trial_runs(root), read_samples(os.path.join(root, SAMPLES)), args.every)


if __name__ == "__main__":
    main()
