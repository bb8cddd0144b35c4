"""Where a trial's time goes: the overhead case through ktsweep, broken down per phase.

    .venv/bin/python bench/trial_profile.py [--trials 50]
Workers time their own phases (build, fit, save: MLflow metrics ``worker_*_seconds``);
the driver's span of a trial is its MLflow run (start at Ray's trial start, end at
its completion); the gap is the time a worker sits between two of its trials.
The plain keras-tuner side runs the same search in the same process for the
per-trial reference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from cases import CASES  # noqa: E402


def ktsweep_runs(root: str, overrides: list[str]) -> list:
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.flow import run_sweep
    from ktsweep.tracking.records import find_runs, local_uri

    cfg = compose([f"sweep.root={root}", "sweep.report=false", "tracking.register=false", *overrides])
    outcome = run_sweep(validate(cfg), resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True))
    client = MlflowClient(local_uri(root))
    wall = outcome.wall_seconds
    print(f"sweep waiting on MLflow: {outcome.tracking_seconds:.2f} s of {wall:.1f} s sweep wall "
          f"({100 * outcome.tracking_seconds / wall:.1f}%); MLflow calls on the writer thread: "
          f"{outcome.tracking_write_seconds:.2f} s ({100 * outcome.tracking_write_seconds / wall:.1f}%)")
    return find_runs(client, outcome.experiment_id, sweep=outcome.name, kind="trial")


def plain_seconds(overrides: list[str]) -> float:
    """Wall time of the same search with plain keras-tuner, minus its imports, per trial."""
    done = subprocess.run([sys.executable, str(BENCH / "plain_keras_tuner.py"), *overrides],
                          capture_output=True, text=True, check=True, cwd=BENCH.parent)
    import json

    info = json.loads(done.stdout.strip().splitlines()[-1])
    return info["search_seconds"] / info["trials"] if "search_seconds" in info else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    overrides = [o for o in CASES["overhead"] if not o.startswith("sweep.max_trials")] + [
        f"sweep.max_trials={args.trials}"
    ]
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        runs = ktsweep_runs(root, overrides)
        wall = time.perf_counter() - started
    rows = defaultdict(list)
    by_worker = defaultdict(list)
    for run in runs:
        m = run.data.metrics
        span = (run.info.end_time - run.info.start_time) / 1000
        rows["driver span (trial start -> complete)"].append(span)
        for phase in ("build", "fit", "save"):
            rows[f"worker {phase}"].append(m.get(f"worker_{phase}_seconds", float("nan")))
        inside = sum(m.get(f"worker_{p}_seconds", 0.0) for p in ("build", "fit", "save"))
        rows["span not inside the trainable"].append(span - inside)
        by_worker[run.data.tags.get("ktsweep.worker.pid")].append((run.info.start_time, run.info.end_time))
    for spans in by_worker.values():
        spans.sort()
        rows["worker idle between its trials"] += [(b[0] - a[1]) / 1000 for a, b in zip(spans, spans[1:])]
    print(f"{len(runs)} trials in {wall:.1f} s, {len(by_worker)} workers\n")
    print("| per trial | median (s) | mean (s) |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.fmean(values):.3f} |")
    per_plain = plain_seconds(overrides)
    span = statistics.median(rows["driver span (trial start -> complete)"])
    print(f"\nplain keras-tuner, same search: {per_plain:.3f} s per trial (search loop only)")
    print(f"ktsweep minus plain, per trial: {span - per_plain:+.3f} s (a worker's time per trial)")


if __name__ == "__main__":
    main()
