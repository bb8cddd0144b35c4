"""Several objectives: the front, its knee, the hypervolume and the selection rule (exact, on points
chosen by hand); the config's checks; the NSGA-II oracle; and a two-objective sweep whose trials the
test controls, through Ray, MLflow, ``ktsweep show``, the report, the card and the Python API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ktsweep.core.pareto import Objective, hypervolume, knee_order, pareto_front, parse_selection

MAX_ACC, MIN_PARAMS = Objective("acc", "max"), Objective("params", "min")


def test_the_front_keeps_exactly_the_points_no_other_beats_on_both() -> None:
    points = [{"acc": 0.9, "params": 100}, {"acc": 0.8, "params": 50}, {"acc": 0.85, "params": 120},  # 2: beaten by 0
              {"acc": 0.9, "params": 100}, {"acc": 0.95, "params": 400}, {"acc": 0.7, "params": 60},  # 5: beaten by 1
              {"acc": float("nan"), "params": 10}, {"params": 5}]  # incomplete: never on the front
    assert pareto_front(points, [MAX_ACC, MIN_PARAMS]) == [0, 1, 3, 4]  # equal points do not beat each other
    assert pareto_front(points, [Objective("acc", "min"), MIN_PARAMS]) == [1, 5]


def test_knee_hypervolume_and_rules() -> None:
    points = [{"acc": 0.5, "params": 85}, {"acc": 0.7, "params": 160}, {"acc": 0.6, "params": 235},
              {"acc": 0.9, "params": 310}, {"acc": 0.95, "params": 385}]
    objectives = [MAX_ACC, MIN_PARAMS]
    assert knee_order(points, objectives)[0] == 1  # nearest the ideal once both are scaled over the front
    assert sorted(knee_order(points, objectives)) == [0, 1, 3, 4]
    # Minimising (1,3), (2,2), (3,1) up to (4,4): 1 + 2 + 3.
    square = [{"a": 1, "b": 3}, {"a": 2, "b": 2}, {"a": 3, "b": 1}, {"a": 3.5, "b": 3.5}]
    a, b = Objective("a", "min"), Objective("b", "min")
    assert hypervolume(square, [a, b], {"a": 4, "b": 4}) == pytest.approx(6.0)
    assert hypervolume([{"a": 1, "b": 1, "c": 1}], [a, b, Objective("c", "min")], {"a": 2, "b": 3, "c": 4}) == 6.0
    assert hypervolume([{"acc": 0.9, "params": 10}], objectives, {"acc": 0.5, "params": 20}) == pytest.approx(4.0)

    rule = parse_selection("max acc where params <= 320 and params > 100")
    assert rule.rank(points, objectives) == [3, 1, 2]
    assert parse_selection("MIN params").rank(points, objectives)[0] == 0
    assert parse_selection("knee").rank(points, objectives)[0] == 1
    assert parse_selection("max acc where params < 50").rank(points, objectives) == []
    same_size = [{"acc": 0.8, "params": 100}, {"acc": 0.9, "params": 100}, {"acc": 0.9, "params": 90}]
    assert parse_selection("min params where acc >= 0.8").rank(same_size, objectives) == [2, 1, 0]
    assert parse_selection("max acc").rank(same_size, objectives)[0] == 2  # a tie never publishes a dominated one
    for bad in ("best", "max", "max acc where params ~ 3", "max acc where"):
        with pytest.raises(ValueError, match="cannot read"):
            parse_selection(bad)


def test_objectives_in_the_config() -> None:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.core.errors import UsageError

    sweep = validate(compose(["sweep.objectives=[val_accuracy,params,val_loss:max]"])).sweep
    assert sweep.objectives == ["val_accuracy:max", "params:min", "val_loss:max"]
    assert (sweep.objective, sweep.direction) == ("val_accuracy", "max")  # the first drives the strategy
    for overrides, message in [
        (["sweep.objectives=[val_accuracy]"], "sweep.objectives needs two or more metrics"),
        (["sweep.objectives=[val_accuracy,params,params]"], "names a metric twice"),
        (["sweep.objectives=[val_accuracy,params:up]"], "the direction of params in sweep.objectives must be one of"),
        (["sweep.objectives=[val_accuracy,params]", "sweep.select=max latency_ms"],
         "sweep.select='max latency_ms' names latency_ms, which sweep.objectives does not"),
        (["sweep.objectives=[val_accuracy,params]", "sweep.select=best one"], "sweep.select: cannot read the rule"),
        (["tuner=nsga2"], "tuner=nsga2 searches several objectives; set sweep.objectives"),
        (["tuner=motpe"], "tuner=motpe searches several objectives; set sweep.objectives"),
        (["sweep.objectives=[params,val_accuracy]"], "sweep.objectives starts with params, which is measured after "
                                                     "training"),
        (["sweep.objectives=[val_quality,params]"], "cannot tell whether 'val_quality' in sweep.objectives should go "
                                                    "up or down; write val_quality:max or val_quality:min"),
    ]:
        with pytest.raises(UsageError, match=message):
            validate(compose(overrides))


def test_every_objective_is_checked_in_the_worker() -> None:
    from ktsweep.core.errors import FatalError, TrialError
    from ktsweep.execution.trainable import check_objectives

    check_objectives({"val_accuracy": 0.9, "params": 10.0}, ("val_accuracy", "params"))
    with pytest.raises(FatalError, match=r"sweep.objectives names val_auc, which the model does not log \(it logs "
                                         r"params, val_accuracy\)"):
        check_objectives({"val_accuracy": 0.9, "params": 10.0}, ("val_accuracy", "val_auc"))
    with pytest.raises(TrialError, match="objective latency_ms=nan at the best epoch"):
        check_objectives({"val_accuracy": 0.9, "latency_ms": float("nan")}, ("val_accuracy", "latency_ms"))


@pytest.mark.backend
def test_the_model_metrics_on_this_backend() -> None:
    """``params`` and ``latency_ms`` as the worker measures them (``predict_on_batch`` differs per backend)."""
    import keras
    import numpy as np

    from ktsweep.execution.model_metrics import LATENCY_CALLS, measure

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8), keras.layers.Dense(10)])
    measured = measure(model, np.zeros((1, 64), dtype="float32"), ("params", "latency_ms"))
    assert measured["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert 0 < measured["latency_ms"] < 1000 and LATENCY_CALLS >= 10
    assert measure(model, np.zeros((1, 64)), ("params",)) == {"params": 610.0}  # latency only when asked


def _nsga2(tmp_path: Path, oracle_class: Any = None, **kwargs: Any) -> Any:
    import keras_tuner as kt
    import pareto_helpers

    from ktsweep.search.optuna_oracle import NSGA2Oracle

    oracle = (oracle_class or NSGA2Oracle)(objective=kt.Objective("val_gain", "max"), objectives=["val_gain:max", "val_cost:min"],
                         max_trials=40, population_size=6, seed=1, **kwargs)
    oracle._set_project_dir(str(tmp_path), "oracle")
    pareto_helpers.Landscape().build(oracle.hyperparameters)
    return oracle


def _run_trials(oracle: Any, count: int) -> None:
    import pareto_helpers

    for i in range(count):
        trial = oracle.create_trial(f"tuner{i}")
        metrics = pareto_helpers.Landscape().fit(trial.hyperparameters, None)
        oracle.update_trial(trial.trial_id, metrics)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_the_nsga2_oracle_breeds_from_the_front_and_rebuilds_its_study_on_resume(tmp_path: Path) -> None:
    from ktsweep.core.pareto import hypervolume
    from ktsweep.search.optuna_oracle import GENERATION_KEY, optuna_distribution

    oracle = _nsga2(tmp_path)
    kinds = {hp.name: type(optuna_distribution(hp)).__name__ for hp in oracle.hyperparameters.space}
    assert kinds == {"x": "FloatDistribution", "width": "IntDistribution"}
    _run_trials(oracle, 24)
    study = oracle._study
    assert len(study.trials) == 24 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.trials[5].values == [pytest.approx(oracle.trials[sorted(oracle.trials)[5]].metrics.get_last_value(
        "val_gain")), pytest.approx(oracle.trials[sorted(oracle.trials)[5]].metrics.get_last_value("val_cost"))]
    assert max(t.system_attrs[GENERATION_KEY] for t in study.trials) >= 2  # bred beyond the random first generation
    objectives = [Objective("val_gain", "max"), Objective("val_cost", "min")]
    points = [{"val_gain": t.values[0], "val_cost": t.values[1]} for t in study.trials]
    assert hypervolume(points, objectives, {"val_gain": 0.0, "val_cost": 2.0}) > 0
    oracle.save()

    resumed = _nsga2(tmp_path)
    resumed.reload()
    assert resumed._study is None
    _run_trials(resumed, 1)  # the first ask rebuilds the study from the 24 finished trials
    assert len(resumed._study.trials) == 25
    assert [t.params for t in resumed._study.trials[:24]] == [t.params for t in study.trials]

    running = resumed.create_trial("tuner-killed")  # the driver dies while this trial runs
    resumed.save()
    again = _nsga2(tmp_path)
    again.reload()
    retried = again.create_trial("tuner-after")  # Keras Tuner retries it: no ask of the study
    assert retried.trial_id == running.trial_id and again._study is None
    again.update_trial(retried.trial_id, {"val_gain": 1.0, "val_cost": 0.5})
    retried.status = "COMPLETED"
    again.end_trial(retried)
    assert len(again._study.trials) == 26 and again._study.trials[-1].values == [1.0, 0.5]


def test_a_two_objective_sweep_finds_the_front_of_trials_it_controls(ray_session: Any, store_root: Path,
                                                                     mlflow_client: Any, tmp_path: Path) -> None:
    import pareto_helpers
    from sklearn.datasets import load_digits
    from test_cli import ktsweep

    import ktsweep as kts
    from ktsweep.core.errors import UsageError
    from ktsweep.dashboards.report import build_report
    from ktsweep.registry.pull import pull
    from ktsweep.tracking.records import OBJECTIVE_METRIC, TAG_PARETO_FRONT, TAG_TRIAL, find_runs

    x, y = load_digits(return_X_y=True)
    name = "pareto-controlled"
    common = dict(epochs=1, tuner="grid", objective=["val_quality:max", "params"], root=str(store_root), name=name)
    result = kts.sweep(pareto_helpers.Controlled(), x[:1000], y[:1000], validation_data=(x[1000:1400], y[1000:1400]),
                       **common)
    assert result.status == "FINISHED" and result.completed == 5
    units = _trial_units(result, mlflow_client)
    on_front = {units[entry["trial_id"]] for entry in result.pareto_front}
    assert on_front == {1, 2, 4, 5}  # 3 is beaten by 2 on both
    for entry in result.pareto_front:  # the worker measured the real model
        assert entry["values"]["params"] == pareto_helpers.params_of(units[entry["trial_id"]])
        assert entry["values"]["val_quality"] == pytest.approx(pareto_helpers.QUALITY[units[entry["trial_id"]]])
    assert units[result.best_trial_id] == 2  # the knee, worked out by hand in test_knee_hypervolume_and_rules

    experiment = mlflow_client.get_experiment_by_name("ktsweep").experiment_id
    runs = find_runs(mlflow_client, experiment, sweep=name, kind="trial")
    assert {r.data.tags[TAG_TRIAL]: r.data.metrics[f"{OBJECTIVE_METRIC}params"] for r in runs} == {
        t: pareto_helpers.params_of(u) for t, u in units.items()}
    parent = find_runs(mlflow_client, experiment, sweep=name, kind="sweep")[0]
    assert sorted(json.loads(parent.data.tags[TAG_PARETO_FRONT])) == sorted(e["trial_id"] for e in result.pareto_front)
    card = pull(mlflow_client, experiment, name, out=str(tmp_path / "pulled")).card
    assert card["selection"]["rule"] == "knee" and card["selection"]["objectives"] == ["val_quality:max", "params:min"]
    assert card["lineage"]["trial_id"] == result.best_trial_id and len(card["selection"]["front"]) == 4
    page = build_report(mlflow_client, experiment, name)
    assert "Pareto front" in page and "4 of 5 trials" in page
    shown = ktsweep("show", "--root", str(store_root), name, "--format", "json", cwd=tmp_path)
    rows = {row["trial"]: row for row in json.loads(shown.stdout)}
    assert {units[t] for t, row in rows.items() if row["front"] == "yes"} == {1, 2, 4, 5}

    # Another rule on the same sweep: nothing trains again, another trial is published.
    again = kts.sweep(pareto_helpers.Controlled(), x[:1000], y[:1000], validation_data=(x[1000:1400], y[1000:1400]),
                      select="max val_quality where params <= 320", **common)
    assert units[again.best_trial_id] == 4 and again.completed == 5
    assert len(find_runs(mlflow_client, experiment, sweep=name, kind="trial")) == 5
    assert again.registered_model and again.model_version
    versions = len(mlflow_client.search_model_versions(f"name = '{again.registered_model}'"))

    # A rule no trial meets: one line, nothing published, the earlier model left as it was.
    none = kts.sweep(pareto_helpers.Controlled(), x[:1000], y[:1000], validation_data=(x[1000:1400], y[1000:1400]),
                     select="max val_quality where params <= 10", **common)
    assert none.status == "FINISHED" and none.completed == 5 and none.best_trial_id is None
    assert none.model_path is None and "no completed trial meets sweep.select='max val_quality where params <= 10'" \
        in none.promotion
    with pytest.raises(UsageError, match="no completed trial meets sweep.select"):
        none.best_model()
    assert len(mlflow_client.search_model_versions(f"name = '{again.registered_model}'")) == versions
    assert len(find_runs(mlflow_client, experiment, sweep=name, kind="trial")) == 5
    parent = find_runs(mlflow_client, experiment, sweep=name, kind="sweep")[0]
    assert parent.data.tags["ktsweep.select"] == "max val_quality where params <= 10"


def _trial_units(result: Any, client: Any) -> dict[str, int]:
    """Trial id -> its units, from MLflow."""
    from ktsweep.tracking.records import TAG_TRIAL, find_runs

    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    return {r.data.tags[TAG_TRIAL]: int(r.data.params["units"])
            for r in find_runs(client, experiment, sweep=result.name, kind="trial")}


def test_the_motpe_oracle_models_the_fronts_after_its_random_start(tmp_path: Path) -> None:
    from ktsweep.search.optuna_oracle import MOTPEOracle

    oracle = _nsga2(tmp_path, MOTPEOracle)
    _run_trials(oracle, 10)
    assert type(oracle._study.sampler).__name__ == "TPESampler" and len(oracle._study.trials) == 10
    assert len(oracle._study.directions) == 2 and all(t.state.name == "COMPLETE" for t in oracle._study.trials)


@pytest.mark.slow
def test_a_guided_motpe_sweep_through_ray(ray_session: Any, store_root: Path, mlflow_client: Any) -> None:
    """tuner=motpe built from the config (its objectives a copy of sweep.objectives) and pickled by Ray
    with the searcher; the front the sweep reports is the front of what MLflow holds."""
    import pareto_helpers
    from sklearn.datasets import load_digits

    import ktsweep as kts
    from ktsweep.tracking.records import OBJECTIVE_METRIC, TAG_TRIAL, find_runs

    x, y = load_digits(return_X_y=True)
    result = kts.sweep(pareto_helpers.Landscape(), x[:500], y[:500], epochs=1, tuner="motpe", max_trials=8,
                       objective=["val_gain:max", "val_cost:min"], root=str(store_root), register=False,
                       overrides=["tuner.population_size=4"])
    assert result.status == "FINISHED" and result.completed == 8
    experiment = mlflow_client.get_experiment_by_name("ktsweep").experiment_id
    runs = find_runs(mlflow_client, experiment, sweep=result.name, kind="trial")
    points = [{name: r.data.metrics[f"{OBJECTIVE_METRIC}{name}"] for name in ("val_gain", "val_cost")} for r in runs]
    objectives = [Objective("val_gain", "max"), Objective("val_cost", "min")]
    expected = {runs[i].data.tags[TAG_TRIAL] for i in pareto_front(points, objectives)}
    assert {entry["trial_id"] for entry in result.pareto_front} == expected
