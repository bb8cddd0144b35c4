"""Trials that raise, diverge or cannot work: recorded as failed, never chosen, sweep stops when it must."""

from __future__ import annotations

from typing import Any

from ktsweep.tracking.records import TAG_ERROR, TAG_STATUS, find_runs

SMALL = ["sweep.epochs=2", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_hidden.default=1", "tracking.register=false"]


def trial_runs(client: Any, outcome: Any) -> list[Any]:
    return find_runs(client, outcome.experiment_id, sweep=outcome.name, kind="trial")


def test_trial_that_raises_is_failed_with_its_message_and_the_sweep_goes_on(run_sweep: Any, mlflow_client: Any) -> None:
    outcome, _ = run_sweep(*SMALL, "hypermodel._target_=fakes.RaisesWithSGD", "sweep.max_trials=6",
                           "tuner.max_consecutive_failed_trials=10")
    assert outcome.status == "FINISHED"
    runs = trial_runs(mlflow_client, outcome)
    failed = [r for r in runs if r.data.tags[TAG_STATUS] == "FAILED"]
    done = [r for r in runs if r.data.tags[TAG_STATUS] == "COMPLETED"]
    assert len(runs) == 6 and failed and done
    for run in failed:
        assert run.data.params["optimizer"] == "sgd"
        assert "ValueError: cannot handle sgd" in run.data.tags[TAG_ERROR]
        assert run.info.status == "FAILED"
    assert all(r.data.params["optimizer"] == "adam" for r in done)
    assert outcome.failed == len(failed) and outcome.completed == len(done)


def test_nan_trials_are_failed_and_never_best(run_sweep: Any, mlflow_client: Any) -> None:
    outcome, _ = run_sweep(*SMALL, "hypermodel._target_=fakes.DivergesWithSGD", "sweep.max_trials=5",
                           "tuner.max_consecutive_failed_trials=10")
    runs = trial_runs(mlflow_client, outcome)
    diverged = [r for r in runs if r.data.params["optimizer"] == "sgd"]
    assert diverged, "the seed gave no sgd trial"
    for run in diverged:
        assert run.data.tags[TAG_STATUS] == "FAILED"
        assert "loss became nan at epoch 0" in run.data.tags[TAG_ERROR]
        history = mlflow_client.get_metric_history(run.info.run_id, "loss")
        assert len(history) == 1  # TerminateOnNaN stopped it after the first epoch
    best = next(r for r in runs if r.data.tags["ktsweep.trial_id"] == outcome.best_trial_id)
    assert best.data.params["optimizer"] == "adam"


def test_consecutive_failures_stop_the_sweep_naming_the_error(run_sweep: Any, mlflow_client: Any) -> None:
    outcome, _ = run_sweep(*SMALL, "hypermodel._target_=fakes.RaisesWithSGD", "sweep.max_trials=20",
                           "hypermodel.space.optimizer.values=[sgd]", "tuner.max_consecutive_failed_trials=2")
    assert outcome.status == "FAILED"
    assert "consecutive failures" in outcome.error and "cannot handle" in outcome.error
    assert outcome.completed == 0 and outcome.best_trial_id is None
    assert len(trial_runs(mlflow_client, outcome)) < 20
    parent = mlflow_client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FAILED" and "consecutive failures" in parent.data.tags["ktsweep.error"]


def test_build_returning_no_model_stops_the_sweep_before_any_trial(run_sweep: Any) -> None:
    import pytest

    from ktsweep.core.errors import UsageError

    with pytest.raises(UsageError, match=r"build\(hp\) returned NoneType, expected a compiled keras.Model"):
        run_sweep(*SMALL, "hypermodel._target_=fakes.BuildReturnsNothing", "sweep.max_trials=5")


def test_objective_the_model_never_logs_stops_the_sweep(run_sweep: Any, mlflow_client: Any, tmp_path: Any) -> None:
    import pytest

    from ktsweep.core.errors import UsageError
    from ktsweep.registry.pull import pull

    outcome, _ = run_sweep(*SMALL, "hypermodel.objective=val_auc", "sweep.max_trials=5")
    assert outcome.status == "FAILED"
    assert "objective 'val_auc' is not among the metrics the model logs" in outcome.error
    assert "val_accuracy" in outcome.error  # names what could be used instead
    assert outcome.completed == 0
    with pytest.raises(UsageError, match=f"sweep '{outcome.name}' has no finished trial, so no model to pull"):
        pull(mlflow_client, outcome.experiment_id, outcome.name, out=str(tmp_path / "out"))


def test_worker_killed_mid_trial_is_retried_and_the_sweep_completes(run_sweep: Any, mlflow_client: Any) -> None:
    import os

    from fakes import DIES_ONCE_MARKER

    if os.path.exists(DIES_ONCE_MARKER):
        os.remove(DIES_ONCE_MARKER)
    try:
        outcome, _ = run_sweep(*SMALL, "hypermodel._target_=fakes.WorkerDiesOnce", "sweep.max_trials=3",
                               "executor.max_failures=1")
    finally:
        if os.path.exists(DIES_ONCE_MARKER):
            os.remove(DIES_ONCE_MARKER)
    assert outcome.status == "FINISHED" and outcome.completed == 3 and outcome.failed == 0
    runs = trial_runs(mlflow_client, outcome)
    assert len(runs) == 3 and all(r.data.tags[TAG_STATUS] == "COMPLETED" for r in runs)
    retried = [r for r in runs if r.data.tags["ktsweep.attempts"] == "2"]
    assert len(retried) == 1 and "ktsweep.last_worker_error" in retried[0].data.tags
