"""A long sweep stays flat: 300 trivial trials on reused workers, every one recorded once.

The workers report their RSS with every trial (MLflow tag ``ktsweep.worker.rss_mb``).
Before the trial's custom-gradient registry entries were released, a reused worker
grew ~1.4 MB per trial: about +30% between trial 50 and 300 on a ~780 MB worker.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from ktsweep.tracking.records import TAG_TRIAL, find_runs

TRIALS = 300
WARM = 50  # trials after which the workers' memory is measured from (TensorFlow and the first graphs warm)
# The overhead case of bench/cases.py: 1 epoch, at most one Dense layer of 16, 10% of digits to validate.
TRIVIAL = [
    "tuner=random", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=16",
    "data.val_fraction=0.1", "data.test_fraction=0.8",
]


@pytest.mark.slow
def test_workers_stay_flat_and_every_trial_has_one_finished_run(run_sweep: Any, mlflow_client: Any) -> None:
    outcome, _ = run_sweep(*TRIVIAL, f"sweep.max_trials={TRIALS}", "tracking.register=false", "sweep.report=false")
    assert outcome.status == "FINISHED" and outcome.completed == TRIALS
    runs = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    per_trial = Counter(run.data.tags[TAG_TRIAL] for run in runs)
    assert len(per_trial) == TRIALS and set(per_trial.values()) == {1}, per_trial.most_common(3)
    assert {run.info.status for run in runs} == {"FINISHED"}

    ordered = sorted(runs, key=lambda run: run.info.end_time)
    rss: dict[str, list[tuple[int, float]]] = defaultdict(list)  # worker pid -> (sweep trial index, RSS)
    for index, run in enumerate(ordered, start=1):
        rss[run.data.tags["ktsweep.worker.pid"]].append((index, float(run.data.tags["ktsweep.worker.rss_mb"])))
    growth = {}
    for pid, series in rss.items():
        warm = [mb for index, mb in series if index <= WARM]
        if warm and series[-1][0] > WARM:  # a worker that was there at trial 50 and went on
            growth[pid] = series[-1][1] / warm[-1] - 1
    assert growth, f"no worker ran both before and after trial {WARM}: {({p: len(s) for p, s in rss.items()})}"
    assert max(growth.values()) < 0.05, {pid: f"{100 * g:+.1f}%" for pid, g in growth.items()}
