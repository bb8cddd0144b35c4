"""Early stopping of weak trials: the same random search with and without ``scheduler=asha``.

Both variants are ktsweep (same oracle, seed, data split, epochs; trial checkpoints as the
config gives them), each run a fresh process, the two alternating; prints a markdown table
of medians. ASHA is run with its defaults (grace_period 1, reduction_factor 3).
    .venv/bin/python bench/asha.py [--reps 3] [--max-trials N] [--epochs N] [CASE ...]
``--max-trials`` / ``--epochs`` shrink the cases (a quick check that the script works).
Each run also reads its MLflow store (before its folder goes): epochs trained, trials stopped,
and the trials' summed time (Ray's span of each, and ``fit`` alone), to show where time went.
``--simulate`` trains nothing: it counts the epochs Ray's own ASHA bracket lets each case
train for a few grace periods and reduction factors (random learning curves, 2 trials at a time).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402
from sweep_speedup import BENCH, timed  # noqa: E402

VARIANTS = {"full": [], "asha": ["scheduler=asha"]}


def shrink(overrides: list[str], **values: int | None) -> list[str]:
    """The case's overrides with ``sweep.<key>`` replaced where a value is given."""
    changed = {f"sweep.{key}": value for key, value in values.items() if value is not None}
    kept = [o for o in overrides if o.split("=", 1)[0] not in changed]
    return kept + [f"{key}={value}" for key, value in changed.items()]


def trial_facts(root: str) -> dict:
    """What the sweep's trials did, from its MLflow store: epochs trained, stopped early, time."""
    from ktsweep.tracking.records import TAG_STOPPED_EARLY
    from ktsweep.tracking.sqlite_runs import SqliteRuns

    store = SqliteRuns(os.path.join(root, "mlflow.db"))
    try:
        ids = [str(row[0]) for row in store.db.execute("SELECT experiment_id FROM experiments")]
        trials = [run for eid in ids for run in store.find_runs(eid, kind="trial")]
        marks = ",".join("?" * len(trials))
        (epochs,) = store.db.execute(
            f"SELECT COUNT(DISTINCT run_uuid || ':' || step) FROM metrics WHERE key = 'loss' AND run_uuid IN ({marks})",
            [run.info.run_id for run in trials],
        ).fetchone()
    finally:
        store.close()
    return {
        "epochs": epochs,
        "stopped": sum(TAG_STOPPED_EARLY in run.data.tags for run in trials),
        "trial_s": sum(run.data.metrics.get("trial_seconds", 0.0) for run in trials),
        "fit_s": sum(run.data.metrics.get("worker_fit_seconds", 0.0) for run in trials),
    }


def run_case(case: str, reps: int, overrides: list[str]) -> dict:
    runs: dict[str, list[tuple[float, dict]]] = {name: [] for name in VARIANTS}
    for rep in range(reps):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))  # alternate who goes first
        for name in order:
            with tempfile.TemporaryDirectory() as root:
                command = [sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *overrides, *VARIANTS[name]]
                seconds, info = timed(command)
                info.update(trial_facts(root))
            runs[name].append((seconds, info))
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  {case} rep {rep} {name}: {seconds:.1f}s best={info['best']:.4f} trials={info['trials']} "
                  f"epochs={info['epochs']} stopped={info['stopped']} trials_sum={info['trial_s']:.0f}s "
                  f"fit_sum={info['fit_s']:.0f}s load={load}", flush=True)
    row = {"case": case, "overrides": " ".join(overrides)}
    for name, results in runs.items():
        row[f"{name}_s"] = statistics.median(s for s, _ in results)
        row[f"{name}_best"] = statistics.median(i["best"] for _, i in results)
        row[f"{name}_bests"] = [i["best"] for _, i in results]
        row[f"{name}_epochs"] = statistics.median(i["epochs"] for _, i in results)
    return row


def simulated_epochs(trials: int, max_t: int, grace: int, factor: int, seed: int, workers: int = 2) -> int:
    """Epochs trained when Ray's ASHA bracket judges noisy scores of trials of random quality, epoch by epoch."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    class Trial:  # all the bracket reads of a Ray trial
        def __init__(self, trial_id: int) -> None:
            self.trial_id = str(trial_id)

    rng = random.Random(seed)
    bracket = _Bracket(grace, max_t, factor, 0, stop_last_trials=False)
    quality = [rng.gauss(0, 1) for _ in range(trials)]
    waiting, running, epochs = list(range(trials)), {}, 0
    while waiting or running:
        while len(running) < workers and waiting:
            running[waiting.pop(0)] = 0
        for trial in list(running):
            running[trial] += 1
            epochs += 1
            decision = bracket.on_result(Trial(trial), running[trial], quality[trial] + rng.gauss(0, 0.5))
            if decision == TrialScheduler.STOP or running[trial] >= max_t:
                del running[trial]
    return epochs


def simulate(cases: list[str]) -> None:
    for case in cases:
        values = dict(o.split("=", 1) for o in CASES[case] if o.startswith("sweep."))
        trials, epochs = int(values["sweep.max_trials"]), int(values["sweep.epochs"])
        for grace, factor in ((1, 3), (1, 4), (1, 2), (2, 3), (3, 3)):
            trained = statistics.median(simulated_epochs(trials, epochs, grace, factor, seed) for seed in range(200))
            print(f"{case}: grace_period={grace} reduction_factor={factor}: {trained:.0f} of {trials * epochs} epochs "
                  f"({100 * trained / (trials * epochs):.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=["digits_random_32x20", "housing_random_24x30"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--simulate", action="store_true", help="count the epochs ASHA would train; train nothing")
    args = parser.parse_args()
    if args.simulate:
        simulate(args.cases)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; reps={args.reps}")
    rows = [run_case(case, args.reps, shrink(CASES[case], max_trials=args.max_trials, epochs=args.epochs))
            for case in args.cases]
    print("\n| case | overrides | without ASHA (s) | with ASHA (s) | speed-up | epochs without / with "
          "| best without | best with | bests without | bests with |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bests = " | ".join(", ".join(f"{b:.4f}" for b in r[f"{name}_bests"]) for name in VARIANTS)
        print(f"| {r['case']} | `{r['overrides']}` | {r['full_s']:.1f} | {r['asha_s']:.1f} "
              f"| {r['full_s'] / r['asha_s']:.2f}x | {r['full_epochs']:.0f} / {r['asha_epochs']:.0f} "
              f"| {r['full_best']:.4f} | {r['asha_best']:.4f} | {bests} |")


if __name__ == "__main__":
    main()
