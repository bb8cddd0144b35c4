"""Weak trials stopped early for every strategy (Ray's ASHA on Keras Tuner's oracles), and grid search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from test_sweep_e2e import oracle_of

from ktsweep.execution.trial_result import DETAILS_KEY
from ktsweep.tracking.records import TAG_STATUS, TAG_STOPPED_EARLY, TAG_TRIAL, find_runs, local_uri

SMALL_NETS = ["hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=32", "tracking.register=false"]


class FakeTrial:
    """What a Ray scheduler reads of a trial."""

    def __init__(self, kt_id: str, status: str = "RUNNING") -> None:
        self.trial_id, self.config, self.status = f"ray-{kt_id}", {"kt_trial_id": kt_id}, status


class FakeController:
    def __init__(self, trials: list[FakeTrial]) -> None:
        self.trials = trials

    def get_live_trials(self) -> list[FakeTrial]:
        return self.trials


@pytest.mark.parametrize("scheduler", ["asha", "median"])
def test_scheduler_judges_epochs_and_asks_the_trial_to_stop(scheduler: str, tmp_path: Path) -> None:
    """Ray is never told STOP (its thread would die before the final report) nor PAUSE (the trial would
    start over): the weak trial gets a stop request in its folder; final results are not judged."""
    from ray.tune.schedulers import TrialScheduler

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.schedulers import make_scheduler

    conf = validate(compose([f"scheduler={scheduler}", "scheduler.grace_period=1", "sweep.epochs=5",
                             *(["scheduler.min_samples_required=1"] if scheduler == "median" else [])])).scheduler
    judge = make_scheduler(conf, trials_root=str(tmp_path))
    judge.set_search_properties("objective", "max")
    good, weak, waiting = FakeTrial("0"), FakeTrial("1"), FakeTrial("2", status="PENDING")
    controller = FakeController([good, weak, waiting])
    for trial in (good, weak):
        judge.on_trial_add(controller, trial)
    decisions = []
    details = {DETAILS_KEY: "x" * 1000}  # a packed epoch report: not the scheduler's to keep
    for epoch in range(4):
        decisions.append(judge.on_trial_result(controller, good, {"kind": "epoch", "epoch": epoch, "objective": 0.9,
                                                                  **details}))
        decisions.append(judge.on_trial_result(controller, weak, {"kind": "epoch", "epoch": epoch, "objective": 0.1,
                                                                  **details}))
    decisions.append(judge.on_trial_result(controller, good, {"kind": "final", "objective": 0.0}))
    judge.on_trial_complete(controller, good, {"kind": "final", "objective": 0.0})
    assert set(decisions) == {TrialScheduler.CONTINUE}
    assert (tmp_path / "trial_1" / "stop").read_text() == "0"  # after its first epoch, the first it could be judged
    assert not (tmp_path / "trial_0").exists()
    if scheduler == "median":  # the median rule keeps every judged result to the sweep's end
        assert {key for results in judge._results.values() for r in results for key in r} <= {
            "objective", "epoch", "epochs_done"}


def trial_runs(client: Any, outcome: Any) -> dict[str, Any]:
    return {r.data.tags[TAG_TRIAL]: r for r in find_runs(client, outcome.experiment_id, sweep=outcome.name, kind="trial")}


@pytest.mark.backend
@pytest.mark.slow
def test_asha_stops_weak_random_trials_and_keeps_the_best(run_sweep: Any, mlflow_client: Any, store_root: Path) -> None:
    from ktsweep.dashboards.leaderboard import STOPPED_COLUMN, trials_frame
    from ktsweep.dashboards.report import build_report
    from ktsweep.tracking.sqlite_runs import SqliteRuns

    search = ["tuner=random", "sweep.max_trials=16", "sweep.epochs=9", *SMALL_NETS]
    asha, _ = run_sweep(*search, "scheduler=asha", "scheduler.grace_period=1", "scheduler.reduction_factor=3")
    full, _ = run_sweep(*search)  # the same 16 hyperparameter sets (same seed), every one to epoch 9
    assert asha.status == full.status == "FINISHED" and asha.completed == 16 and asha.failed == 0

    runs = trial_runs(mlflow_client, asha)
    assert len(runs) == 16 and all(r.info.status == "FINISHED" and r.data.tags[TAG_STATUS] == "COMPLETED"
                                   for r in runs.values())
    stopped = {t: int(r.data.tags[TAG_STOPPED_EARLY]) for t, r in runs.items() if TAG_STOPPED_EARLY in r.data.tags}
    assert 0 < len(stopped) < 16 and all(epoch < 8 for epoch in stopped.values()), stopped
    for trial, run in runs.items():
        steps = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")]
        last = stopped.get(trial, 8)
        assert sorted(steps) == list(range(last + 1))  # a stopped trial trained no further than where it was cut
        assert run.data.metrics["best_epoch"] <= last and math.isfinite(run.data.metrics["objective"])
    # Stopping the weak ones costs no quality: the best is in the range of the full sweep's.
    assert asha.best_score >= full.best_score - 0.03, (asha.best_score, full.best_score)
    assert sum(len(mlflow_client.get_metric_history(r.info.run_id, "val_accuracy")) for r in runs.values()) < 16 * 9

    # Marked in `ktsweep show` (read straight from sqlite), the leaderboard and the report; no trial folder left.
    frame, _, _ = trials_frame(SqliteRuns(local_uri(str(store_root)).removeprefix("sqlite:///")), asha.experiment_id,
                               asha.name)
    assert {str(t): int(s) for t, s in zip(frame["trial"], frame[STOPPED_COLUMN]) if not math.isnan(s)} == stopped
    assert STOPPED_COLUMN not in trials_frame(mlflow_client, full.experiment_id, full.name)[0]
    page = build_report(mlflow_client, asha.experiment_id, asha.name)
    assert f"({len(stopped)} stopped early)" in page
    assert all(f"trial {t} (stopped early after epoch {s})" in page for t, s in stopped.items())
    assert not list((store_root / "sweeps" / asha.name / "trials").glob("trial_*"))
    assert float(mlflow_client.get_run(asha.parent_run_id).data.tags["ktsweep.disk_mb"]) > 0


@pytest.mark.slow
def test_bayesian_with_asha_learns_from_stopped_trials(run_sweep: Any, mlflow_client: Any) -> None:
    # Reduction factor 4: a trial goes on past a rung only in the top quarter of those recorded there. With 2
    # (the median), ASHA's decisions depend on which trials reach a rung first: once, the weak random trials
    # came first and the Bayesian ones, all better, were never stopped.
    outcome, config = run_sweep("tuner=bayesian", "sweep.max_trials=10", "tuner.num_initial_points=3", "sweep.epochs=6",
                                "scheduler=asha", "scheduler.reduction_factor=4", *SMALL_NETS)
    assert outcome.status == "FINISHED" and outcome.completed == 10 and outcome.failed == 0, outcome.error
    runs = trial_runs(mlflow_client, outcome)
    stopped = {t for t, r in runs.items() if TAG_STOPPED_EARLY in r.data.tags}
    assert stopped, "no trial was stopped: the test shows nothing"
    oracle, _ = oracle_of(outcome, config)
    assert all(t.status == "COMPLETED" and t.score is not None for t in oracle.trials.values())
    for trial in stopped:  # the oracle holds the stopped trial's best epoch, as MLflow does
        assert oracle.trials[trial].score == pytest.approx(runs[trial].data.metrics["objective"])
        assert oracle.trials[trial].best_step == runs[trial].data.metrics["best_epoch"]
        assert "stopped early" in oracle.trials[trial].message
    _, scores = oracle._vectorize_trials()  # what the Gaussian process is fitted on
    assert len(scores) == 10 and all(math.isfinite(s) for s in scores)


@pytest.mark.backend
def test_grid_runs_every_point_once(run_sweep: Any, mlflow_client: Any) -> None:
    from ktsweep.search.oracles import planned_trials

    outcome, config = run_sweep(
        "tuner=grid", "sweep.epochs=1", "tracking.register=false",
        "hypermodel.space.n_hidden.min=1", "hypermodel.space.n_hidden.max=1",
        "hypermodel.space.n_neurons.min=16", "hypermodel.space.n_neurons.max=48", "hypermodel.space.n_neurons.step=16",
        "hypermodel.space.learning_rate.min=0.01", "hypermodel.space.learning_rate.max=0.01",
    )
    assert outcome.status == "FINISHED" and outcome.completed == 6, outcome.error
    points = {(r.data.params["n_neurons"], r.data.params["optimizer"]) for r in trial_runs(mlflow_client, outcome).values()}
    assert points == {(n, o) for n in ("16", "32", "48") for o in ("sgd", "adam")}
    oracle, _ = oracle_of(outcome, config)
    assert len(oracle.trials) == 6 and planned_trials(oracle) == 6
