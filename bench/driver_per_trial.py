"""The driver's own work per trial, over many trials, without Ray or training.

    .venv/bin/python bench/driver_per_trial.py [--trials 1000] [--every 100] [--profile FILE] [--root DIR]

Plays the events Ray Tune would deliver for each trial (the searcher's ``suggest`` and
``on_trial_complete``, the tracking and progress callbacks' start, one epoch and
completion) against a real Keras Tuner RandomSearch oracle (the overhead case's
space) and a real MLflow sqlite store. Per block of trials: the time on the event
loop (what Ray Tune's loop would wait) and the MLflow writer thread's time in MLflow
calls. Anything in the driver that grows with the number of trials before it shows
as a rising row.

``--root DIR`` keeps what it made as a sweep store (sweep ``bench``: MLflow records written
by ktsweep's own tracking callback, the oracle's state, the overrides of the overhead case
with room for 2 more trials), on which ``ktsweep show/list/report/resume`` can be timed
without training 1,000 trials first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402


def oracle_for(directory: str, trials: int) -> Any:
    import keras_tuner as kt

    from ktsweep.search.oracles import keep_state_atomic

    hp = kt.HyperParameters()
    hp.Int("n_hidden", 0, 1)
    hp.Int("n_neurons", 16, 16)
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    hp.Choice("optimizer", ["sgd", "adam"])
    oracle = kt.oracles.RandomSearchOracle(kt.Objective("val_accuracy", "max"), max_trials=trials, hyperparameters=hp)
    oracle._set_project_dir(directory, "oracle")
    keep_state_atomic(oracle)
    oracle.verbose = 0
    return oracle


NAME = "bench"


def open_store(root: str, trials: int) -> tuple[Any, str, str, str]:
    """The store, the sweep's parent run (tagged as ``ktsweep run`` tags it) and its folder."""
    from ktsweep.tracking.records import (
        TAG_DIRECTION,
        TAG_KIND,
        TAG_OBJECTIVE,
        TAG_STRATEGY,
        TAG_SWEEP,
        connect,
        local_uri,
    )

    client, experiment_id = connect(local_uri(root), "ktsweep", root=root)
    tags = {TAG_KIND: "sweep", TAG_SWEEP: NAME, TAG_OBJECTIVE: "val_accuracy", TAG_DIRECTION: "max", TAG_STRATEGY: "random"}
    parent = client.create_run(experiment_id, run_name=NAME, tags=tags).info.run_id
    sweep_dir = os.path.join(root, "sweeps", NAME)
    os.makedirs(sweep_dir, exist_ok=True)
    overrides = [o for o in CASES["overhead"] if not o.startswith("sweep.max_trials")]
    with open(os.path.join(sweep_dir, "overrides.json"), "w") as fh:  # what `ktsweep resume` composes
        json.dump([f"sweep.root={root}", *overrides, f"sweep.max_trials={trials + 2}", "tracking.register=false",
                   "sweep.report=false", f"sweep.name={NAME}"], fh)
    return client, experiment_id, parent, sweep_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--profile", help="write a cProfile of the event loop's work to this file")
    parser.add_argument("--root", help="keep the store as sweep `bench` here (default: a temporary folder)")
    args = parser.parse_args()
    from mlflow.entities import Metric
    from rich.console import Console

    from ktsweep.execution.trial_result import BEST_EPOCH_KEY, BEST_PREFIX, STATUS_KEY
    from ktsweep.search.progress import SweepProgress
    from ktsweep.search.searcher import OracleSearcher
    from ktsweep.tracking.mlflow_callback import MlflowTracking

    print(f"load average at the start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.abspath(args.root or tmp)
        client, experiment_id, parent, sweep_dir = open_store(root, args.trials)
        oracle = oracle_for(sweep_dir, args.trials)
        searcher = OracleSearcher(oracle)
        tracking = MlflowTracking(client, experiment_id=experiment_id, parent_run_id=parent, sweep="bench",
                                  oracle=oracle, sweep_dir=sweep_dir)
        progress = SweepProgress(total=args.trials, objective="val_accuracy", direction="max",
                                 console=Console(file=open(os.devnull, "w"), force_terminal=True))
        callbacks = (tracking, progress)

        def one_trial(index: int) -> None:
            trial = SimpleNamespace(trial_id=f"ray{index}", config=searcher.suggest(f"ray{index}"), last_result=None,
                                    error_file=None)
            for callback in callbacks:
                callback.on_trial_start(0, [], trial)
            score = random.random()
            tracking.on_trial_result(0, [], trial, {"kind": "epoch", "epoch": 0,
                                                    "metrics": {"val_accuracy": score, "loss": 1 - score}})
            final = {STATUS_KEY: "ok", f"{BEST_PREFIX}val_accuracy": score, BEST_EPOCH_KEY: 0, "objective": score,
                     "worker": {"pid": 1, "rss_mb": 1.0}, "phases": {"fit": 0.4}}
            searcher.on_trial_complete(trial.trial_id, final)
            trial.last_result = final
            for callback in callbacks:
                callback.on_trial_complete(0, [], trial)

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        rows = ["| trials | event loop per trial (ms) | MLflow writer per trial (ms) | writer backlog at block end |",
                "|---|---|---|---|"]  # printed at the end: the progress display holds stdout meanwhile
        loop, written = 0.0, tracking.seconds_writing
        for index in range(1, args.trials + 1):
            started = time.perf_counter()
            if profiler:
                profiler.runcall(one_trial, index)
            else:
                one_trial(index)
            loop += time.perf_counter() - started
            if index % args.every == 0:
                backlog = tracking.writer.queued()
                tracking.writer.drain()  # the writer's time per trial, not its lag behind a loop without training
                rows.append(f"| {index - args.every + 1}-{index} | {1000 * loop / args.every:.2f} "
                            f"| {1000 * (tracking.seconds_writing - written) / args.every:.1f} | {backlog} |")
                loop, written = 0.0, tracking.seconds_writing
        tracking.close()
        progress.close()
        client.log_batch(parent, metrics=[Metric("trials_completed", args.trials, 0, 0)])
        client.set_terminated(parent, "FINISHED")
        if profiler:
            profiler.dump_stats(args.profile)
    print("\n".join(["", *rows, ""]))
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
