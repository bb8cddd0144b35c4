"""Several objectives: random search against the guided oracles (``tuner=motpe``, ``tuner=nsga2``), on
digits with ``sweep.objectives=[val_accuracy,params]``, the same number of trials for each.

Each run is a fresh ``ktsweep run`` process (the MLP classifier's space: depth, width, learning rate,
optimizer); the strategies rotate who goes first, and share each rep's seed. The quality of a front is its hypervolume:
the area it dominates up to a reference point, here accuracy 0 and the largest parameter count any run
saw, with the parameter count on a log10 axis (a 2x smaller model counts the same at any size); larger
is better. Prints each run, then a markdown table of medians.
    .venv/bin/python bench/pareto.py [--reps 3] [--trials 24] [--epochs 5] [--population 8]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_speedup import BENCH, timed  # noqa: E402

OBJECTIVES = ("val_accuracy", "params")


def front_points(root: str) -> list[dict[str, float]]:
    """Every completed trial's two objectives, from the run's MLflow store."""
    from ktsweep.tracking.records import OBJECTIVE_METRIC
    from ktsweep.tracking.sqlite_runs import SqliteRuns

    store = SqliteRuns(os.path.join(root, "mlflow.db"))
    try:
        ids = [str(row[0]) for row in store.db.execute("SELECT experiment_id FROM experiments")]
        runs = [run for eid in ids for run in store.find_runs(eid, kind="trial")]
    finally:
        store.close()
    keys = [f"{OBJECTIVE_METRIC}{name}" for name in OBJECTIVES]
    return [{name: run.data.metrics[key] for name, key in zip(OBJECTIVES, keys)}
            for run in runs if all(key in run.data.metrics for key in keys)]


def log_hypervolume(points: list[dict[str, float]], max_params: float) -> float:
    from ktsweep.core.pareto import Objective, hypervolume

    logged = [{"val_accuracy": p["val_accuracy"], "params": math.log10(p["params"])} for p in points]
    objectives = [Objective("val_accuracy", "max"), Objective("params", "min")]
    return hypervolume(logged, objectives, {"val_accuracy": 0.0, "params": math.log10(max_params)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--population", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; reps={args.reps}")
    same = ["sweep.objectives=[val_accuracy,params]", f"sweep.max_trials={args.trials}", f"sweep.epochs={args.epochs}",
            "tracking.register=false"]
    variants = {name: [f"tuner={name}", *([f"tuner.population_size={args.population}"] if name != "random" else [])]
                for name in ("random", "motpe", "nsga2")}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate who goes first
            with tempfile.TemporaryDirectory() as root:
                seconds, info = timed([sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *same,
                                       *variants[name], f"sweep.seed={rep}"])
                info.update(seconds=seconds, points=front_points(root))
            runs[name].append(info)
            print(f"  rep {rep} {name}: {seconds:.1f}s trials={len(info['points'])} "
                  f"best val_accuracy={max(p['val_accuracy'] for p in info['points']):.4f} "
                  f"smallest model={min(p['params'] for p in info['points']):.0f} params", flush=True)
    max_params = max(p["params"] for results in runs.values() for r in results for p in r["points"])
    print(f"\nhypervolume reference: val_accuracy 0, log10(params) {math.log10(max_params):.3f} ({max_params:.0f} params)")
    print("\n| strategy | trials | wall (s) | hypervolume, median | per rep | front size, median |")
    print("|---|---|---|---|---|---|")
    from ktsweep.core.pareto import Objective, pareto_front

    objectives = [Objective("val_accuracy", "max"), Objective("params", "min")]
    for name, results in runs.items():
        volumes = [log_hypervolume(r["points"], max_params) for r in results]
        sizes = [len(pareto_front(r["points"], objectives)) for r in results]
        print(f"| {name} | {args.trials} | {statistics.median(r['seconds'] for r in results):.1f} "
              f"| {statistics.median(volumes):.4f} | {', '.join(f'{v:.4f}' for v in volumes)} "
              f"| {statistics.median(sizes):.0f} |")


if __name__ == "__main__":
    main()
