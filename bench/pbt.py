"""Population Based Training against random search and ASHA at the same budget of epochs.

The housing MLP (``hypermodel=mlp_regressor``: log-uniform learning rate, SGD or Adam, depth and
width), where the learning rate decides much of the result. Three ktsweep variants, each a fresh
process, their order rotating between reps, none retraining (PBT's final model is its best trial's),
each training ``--population`` trials at once on the machine's CPUs (PBT's population trains together):

- ``random``: ``--population`` trials x ``--epochs`` epochs;
- ``pbt``: the same population, ``scheduler=pbt`` (perturbation interval ``--interval``);
- ``asha``: ``--asha-trials`` trials, ``scheduler=asha``: more trials in about the same epochs.

Prints, per variant, the median wall time, the epochs trained (from the MLflow store), the best
validation MSE, the published model's test MSE and (PBT) the exploits, then a markdown table.
    .venv/bin/python bench/pbt.py [--reps 3] [--population 8] [--epochs 20] [--asha-trials 24]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asha import trial_facts  # noqa: E402
from sweep_speedup import BENCH, timed  # noqa: E402


def exploits(root: str) -> int:
    """Exploits the PBT trials recorded on their MLflow runs (0 for the other variants)."""
    from ktsweep.tracking.records import TAG_PBT_EXPLOITS
    from ktsweep.tracking.sqlite_runs import SqliteRuns

    store = SqliteRuns(os.path.join(root, "mlflow.db"))
    try:
        ids = [str(row[0]) for row in store.db.execute("SELECT experiment_id FROM experiments")]
        return sum(int(run.data.tags.get(TAG_PBT_EXPLOITS, 0)) for eid in ids for run in store.find_runs(eid, kind="trial"))
    finally:
        store.close()


HOUSING = ["hypermodel=mlp_regressor", "data=california_housing", "tuner=random", "sweep.final.retrain=false"]


def variants(population: int, epochs: int, asha_trials: int, interval: int) -> dict[str, list[str]]:
    cpus = os.cpu_count() or 1  # every variant trains `population` trials at once, sharing the CPUs
    same = [*HOUSING, f"sweep.epochs={epochs}", f"executor.max_concurrent={population}",
            f"executor.cpus_per_trial={cpus / population:g}"]
    return {
        "random": [*same, f"sweep.max_trials={population}"],
        "pbt": [*same, f"sweep.max_trials={population}", "scheduler=pbt",
                f"scheduler.perturbation_interval={interval}"],
        "asha": [*same, f"sweep.max_trials={asha_trials}", "scheduler=asha"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--asha-trials", type=int, default=24)
    parser.add_argument("--interval", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; reps={args.reps}")
    cases = variants(args.population, args.epochs, args.asha_trials, args.interval)
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate who goes first
            with tempfile.TemporaryDirectory() as root:
                seconds, info = timed([sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *cases[name]])
                info.update(trial_facts(root), exploits=exploits(root), seconds=seconds, test_mse=info["test_metrics"].get("test_loss"))
            runs[name].append(info)
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  rep {rep} {name}: {seconds:.1f}s epochs={info['epochs']} best_val_mse={info['best']:.4f} "
                  f"test_mse={info['test_mse']:.4f} trials={info['trials']} stopped={info['stopped']} exploits={info['exploits']} "
                  f"load={load}",
                  flush=True)
    print("\n| variant | overrides | wall (s) | epochs trained | best val MSE | test MSE | test MSE per rep |")
    print("|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in ("seconds", "epochs", "best", "test_mse")}
        per_rep = ", ".join(f"{r['test_mse']:.4f}" for r in results)
        print(f"| {name} | `{' '.join(cases[name][len(HOUSING):])}` | {median['seconds']:.1f} | {median['epochs']:.0f} "
              f"| {median['best']:.4f} | {median['test_mse']:.4f} | {per_rep} |")


if __name__ == "__main__":
    main()
