"""Fixed cost of a sweep: what ``ktsweep run`` spends outside its trials, against plain keras-tuner.

Both contenders run the same small search as a user would (fresh processes, alternating). For
ktsweep the timeline comes from MLflow's own records of the run: the sweep's run opens once the
data, the oracle and Ray are ready; each trial's run starts when Ray starts the trial and ends when
it ends; the sweep's run ends once the best model is evaluated and registered. For plain
keras-tuner, everything outside ``tuner.search`` is its fixed cost (imports, data, oracle, exit).
    .venv/bin/python bench/fixed_cost.py [--reps 3] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KTSWEEP = Path(sys.executable).with_name("ktsweep")
DEFAULT = ["tuner=random", "sweep.max_trials=6", "sweep.epochs=2"]


def run_ktsweep(overrides: list[str]) -> dict[str, float]:
    """One ``ktsweep run`` in a fresh folder; its timeline in seconds since the command started."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        started = time.time()
        done = subprocess.run([str(KTSWEEP), "run", *overrides, "sweep.name=fixed"], cwd=folder,
                              capture_output=True, text=True)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"ktsweep run failed:\n{done.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{folder}/ktsweep-runs/mlflow.db")
        experiment = client.get_experiment_by_name("ktsweep").experiment_id
        runs = client.search_runs([experiment], max_results=1000)
    sweep = next(r for r in runs if r.data.tags.get("ktsweep.kind") == "sweep")
    trials = [r for r in runs if r.data.tags.get("ktsweep.kind") == "trial"]
    at = lambda ms: ms / 1000 - started  # noqa: E731
    timeline = {
        "sweep run opened": at(sweep.info.start_time),
        "first trial running": min(at(t.info.start_time) for t in trials),
        "last trial ended": max(at(t.info.end_time) for t in trials),
        "sweep run closed": at(sweep.info.end_time),
        "process gone": ended - started,
    }
    timeline["fixed"] = timeline["first trial running"] + timeline["process gone"] - timeline["last trial ended"]
    return timeline


def run_plain(overrides: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.time()
    done = subprocess.run([sys.executable, str(BENCH / "plain_keras_tuner.py"), *overrides], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"plain keras-tuner failed:\n{done.stderr[-3000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    return {"search": info["search_seconds"], "process gone": wall, "fixed": wall - info["search_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {' '.join(args.overrides)}", flush=True)
    ours, plain = [], []
    for rep in range(args.reps):
        order = [("ktsweep", run_ktsweep, ours), ("plain", run_plain, plain)]
        for who, run, into in order[::-1] if rep % 2 else order:
            into.append(run(args.overrides))
            print(f"  rep {rep} {who}: " + ", ".join(f"{k} {v:.1f}" for k, v in into[-1].items()), flush=True)
    median = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print("| ktsweep, seconds since the command started (median) | |\n|---|---|")
    for key in ours[0]:
        print(f"| {key} | {median(ours, key):.1f} |")
    print(f"\n| fixed cost (median) | s |\n|---|---|\n| plain keras-tuner: outside `tuner.search` | {median(plain, 'fixed'):.1f} |"
          f"\n| ktsweep: before the first trial + after the last | {median(ours, 'fixed'):.1f} |"
          f"\n| **ktsweep beyond plain** | **{median(ours, 'fixed') - median(plain, 'fixed'):.1f}** |")


if __name__ == "__main__":
    main()
