"""The searcher adapter on real Keras Tuner oracles, with results played by hand (no Ray trials)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras_tuner as kt
import pytest
from ray.tune.search import Searcher

from ktsweep.execution.trial_result import BEST_EPOCH_KEY, ERROR_KEY, STATUS_KEY
from ktsweep.search.oracles import best_trials
from ktsweep.search.searcher import OracleSearcher


def make_oracle(tmp_path: Path, cls: type = kt.oracles.RandomSearchOracle, direction: str = "max", **kwargs) -> kt.Oracle:
    oracle = cls(objective=kt.Objective("val_accuracy", direction), seed=1, **kwargs)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "oracle")
    hp = oracle.get_space()
    hp.Int("units", 1, 100)
    oracle.update_space(hp)
    return oracle


def ok(score: float, epoch: int = 1) -> dict:
    return {STATUS_KEY: "ok", "objective": score, BEST_EPOCH_KEY: epoch, "best/val_accuracy": score, "best/loss": 0.5}


def test_suggest_then_complete_reaches_the_oracle(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=2)
    searcher = OracleSearcher(oracle)
    config = searcher.suggest("ray-a")
    kt_id = config["kt_trial_id"]
    assert kt.HyperParameters.from_config(json.loads(config["hp"])).values == oracle.trials[kt_id].hyperparameters.values
    searcher.on_trial_complete("ray-a", ok(0.9, epoch=3))
    trial = oracle.trials[kt_id]
    assert trial.status == "COMPLETED"
    assert trial.score == pytest.approx(0.9)
    assert trial.best_step == 3


def test_stopped_oracle_means_finished(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=1)
    searcher = OracleSearcher(oracle)
    searcher.suggest("ray-a")
    searcher.on_trial_complete("ray-a", ok(0.5))
    assert searcher.suggest("ray-b") == Searcher.FINISHED


@pytest.mark.parametrize("gone", [False, True], ids=["handed-off", "parent-model-gone"])
def test_idle_hyperband_means_ask_later(tmp_path: Path, gone: bool) -> None:
    """max_epochs=3, factor=3: bracket 1 starts 3 trials, bracket 0 two; then it must wait. The best of the
    round is continued from its saved model, or (that model gone from Ray storage) trained from its first epoch."""
    oracle = make_oracle(tmp_path, kt.oracles.HyperbandOracle, max_epochs=3, factor=3)
    searcher = OracleSearcher(oracle)
    started = {f"ray-{i}": searcher.suggest(f"ray-{i}") for i in range(5)}
    assert all(isinstance(c, dict) for c in started.values())
    assert searcher.suggest("ray-x") is None  # every bracket's round is running: IDLE
    bracket1 = {k: c for k, c in started.items() if json.loads(c["hp"])["values"]["tuner/bracket"] == 1}
    assert len(bracket1) == 3
    for rank, (ray_id, config) in enumerate(bracket1.items()):
        saved = tmp_path / "ckpt" / config["kt_trial_id"]  # a trial's saved model, as Ray storage holds it
        saved.mkdir(parents=True)
        (saved / "model.keras").write_bytes(b"")
        searcher.record_checkpoint(config["kt_trial_id"], str(saved))
        searcher.on_trial_complete(ray_id, ok(0.1 * (rank + 1)))
    best_parent = list(bracket1.values())[-1]["kt_trial_id"]
    if gone:
        (tmp_path / "ckpt" / best_parent / "model.keras").unlink()
    continued = searcher.suggest("ray-y")
    values = json.loads(continued["hp"])["values"]
    assert values["tuner/trial_id"] == best_parent  # the best of the round goes on
    assert values["tuner/initial_epoch"] == 1 and values["tuner/epochs"] == 3
    handed = "parent_gone" if gone else "parent_checkpoint"
    assert continued[handed] == str(tmp_path / "ckpt" / best_parent) and len({"parent_gone", "parent_checkpoint"} & set(continued)) == 1


def test_direction_min_prefers_the_smaller_objective(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, direction="min", max_trials=2)
    searcher = OracleSearcher(oracle)
    ids = []
    for name, score in (("ray-a", 0.2), ("ray-b", 0.1)):
        ids.append(searcher.suggest(name)["kt_trial_id"])
        searcher.on_trial_complete(name, ok(score))
    assert searcher.mode == "min"
    assert oracle.get_best_trials(1)[0].trial_id == ids[1]


def test_failed_trial_is_recorded_with_its_message_and_the_sweep_goes_on(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=3)
    searcher = OracleSearcher(oracle)
    kt_id = searcher.suggest("ray-a")["kt_trial_id"]
    searcher.on_trial_complete("ray-a", {STATUS_KEY: "failed", ERROR_KEY: "ValueError: bad units", "objective": math.nan})
    assert oracle.trials[kt_id].status == "FAILED"
    assert oracle.trials[kt_id].message == "ValueError: bad units"
    assert searcher.fatal_error is None
    assert isinstance(searcher.suggest("ray-b"), dict)


def test_worker_crash_without_result_is_a_failed_trial(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=3)
    searcher = OracleSearcher(oracle)
    kt_id = searcher.suggest("ray-a")["kt_trial_id"]
    searcher.on_trial_complete("ray-a", None, error=True)
    assert oracle.trials[kt_id].status == "FAILED"
    assert "worker" in oracle.trials[kt_id].message


def test_nan_objective_is_never_best(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=2)
    searcher = OracleSearcher(oracle)
    nan_id = searcher.suggest("ray-a")["kt_trial_id"]
    searcher.on_trial_complete("ray-a", ok(math.nan))
    good_id = searcher.suggest("ray-b")["kt_trial_id"]
    searcher.on_trial_complete("ray-b", ok(0.3))
    assert oracle.trials[nan_id].status == "FAILED"
    assert [t.trial_id for t in best_trials(oracle, 2)] == [good_id]


def test_consecutive_failures_stop_the_sweep_with_the_error(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=10, max_consecutive_failed_trials=2)
    searcher = OracleSearcher(oracle)
    for name in ("ray-a", "ray-b"):
        searcher.suggest(name)
        searcher.on_trial_complete(name, {STATUS_KEY: "failed", ERROR_KEY: "boom"})
    assert "consecutive failures" in searcher.fatal_error and "boom" in searcher.fatal_error
    assert searcher.suggest("ray-c") == Searcher.FINISHED


def test_fatal_trial_error_stops_at_once(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=10)
    searcher = OracleSearcher(oracle)
    searcher.suggest("ray-a")
    searcher.on_trial_complete("ray-a", {STATUS_KEY: "fatal", ERROR_KEY: "objective 'x' is not logged"})
    assert searcher.fatal_error == "objective 'x' is not logged"
    assert searcher.suggest("ray-b") == Searcher.FINISHED


def test_completion_is_idempotent(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=3)
    searcher = OracleSearcher(oracle)
    searcher.suggest("ray-a")
    searcher.on_trial_complete("ray-a", ok(0.4))
    searcher.on_trial_complete("ray-a", ok(0.9))  # a second call must not record again
    assert len(oracle.end_order) == 1
    assert oracle.get_best_trials(1)[0].score == pytest.approx(0.4)


def test_retry_of_invalid_trial_keeps_the_oracle_trial_id(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=3, max_retries_per_trial=1)
    searcher = OracleSearcher(oracle)
    first = searcher.suggest("ray-a")["kt_trial_id"]
    searcher.on_trial_complete("ray-a", None, error=True)
    assert searcher.suggest("ray-b")["kt_trial_id"] == first


def test_state_survives_a_new_searcher(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, max_trials=3)
    searcher = OracleSearcher(oracle)
    kt_id = searcher.suggest("ray-a")["kt_trial_id"]
    searcher.record_checkpoint(kt_id, "/ckpt/a")
    searcher.on_trial_complete("ray-a", ok(0.7))
    reloaded = make_oracle(tmp_path, max_trials=3)
    reloaded.reload()
    again = OracleSearcher(reloaded)
    assert again.checkpoints == {kt_id: "/ckpt/a"}
    assert reloaded.trials[kt_id].status == "COMPLETED"


@pytest.mark.parametrize("reload", ["keras_tuner", "ktsweep"])
def test_a_trial_that_finished_just_before_a_crash_is_not_run_again(tmp_path: Path, reload: str) -> None:
    """Keras Tuner saves its state in ``end_trial`` before taking the trial off its ongoing list."""
    from ktsweep.search.oracles import reload_oracle

    oracle = make_oracle(tmp_path, max_trials=4)
    searcher = OracleSearcher(oracle)
    finished = searcher.suggest("ray-a")["kt_trial_id"]
    interrupted = searcher.suggest("ray-b")["kt_trial_id"]
    searcher.on_trial_complete("ray-a", ok(0.7))  # ...and the driver is killed here
    resumed = make_oracle(tmp_path, max_trials=4)
    if reload == "keras_tuner":  # the control: what Keras Tuner alone would run next
        resumed.reload()
        assert finished in resumed._retry_queue
        return
    reload_oracle(resumed)
    again = OracleSearcher(resumed)
    assert again.suggest("ray-c")["kt_trial_id"] == interrupted  # the interrupted trial is retried
    assert again.suggest("ray-d")["kt_trial_id"] not in (finished, interrupted)
    assert resumed.trials[finished].status == "COMPLETED"
