"""Each strategy end to end on digits: Ray trials, MLflow records, registered champion."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from ktsweep.tracking.records import TAG_STATUS, TAG_TRIAL, find_runs

TINY = ["sweep.epochs=2", "hypermodel.space.n_hidden.max=2", "hypermodel.space.n_neurons.max=64"]
STRATEGIES = {
    "random": ["tuner=random", "sweep.max_trials=3"],
    "bayesian": ["tuner=bayesian", "sweep.max_trials=3", "tuner.num_initial_points=2"],
    "hyperband": ["tuner=hyperband", "sweep.epochs=3", "tuner.factor=3"],
}


def oracle_of(outcome: Any, config: Any) -> Any:
    """Reload the sweep's oracle from its directory, as a resume would."""
    import os

    from hydra.utils import instantiate

    from ktsweep.data.loaders import load_digits
    from ktsweep.search.oracles import build_oracle

    dataset = load_digits(name="digits", val_fraction=0.2, test_fraction=0.2, seed=config.sweep.seed)
    hypermodel = instantiate(config.hypermodel, _convert_="object", data_spec=dataset.spec)
    root = os.path.abspath(config.sweep.root)
    return build_oracle(
        config.tuner,
        objective=config.sweep.objective,
        direction=config.sweep.direction,
        max_trials=config.sweep.max_trials,
        hypermodel=hypermodel,
        directory=os.path.join(root, "sweeps", outcome.name, "oracle"),
    ), dataset


def registered_model(uri: str) -> Any:
    """The registered Keras model through the MLflow flavour it was logged in: tensorflow on TensorFlow, keras elsewhere."""
    import keras
    import mlflow.keras
    import mlflow.tensorflow

    return (mlflow.tensorflow if keras.config.backend() == "tensorflow" else mlflow.keras).load_model(uri)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_end_to_end(strategy: str, run_sweep: Any, mlflow_client: Any) -> None:
    registry_name = f"e2e-{strategy}"
    outcome, config = run_sweep(*TINY, *STRATEGIES[strategy], f"tracking.registered_model={registry_name}")
    assert outcome.status == "FINISHED", outcome.error
    oracle, dataset = oracle_of(outcome, config)
    completed = {t.trial_id: t for t in oracle.trials.values() if t.status == "COMPLETED"}
    assert completed and outcome.completed == len(completed)
    if strategy == "hyperband":
        # max_epochs=3, factor=3: bracket 1 (3 trials, then 1 continued) + bracket 0 (2 trials).
        assert len(oracle.trials) == 6
        assert any("tuner/trial_id" in t.hyperparameters.values for t in completed.values())
    else:
        assert len(oracle.trials) == 3

    children = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    by_trial = {run.data.tags[TAG_TRIAL]: run for run in children}
    assert set(by_trial) == set(completed)  # one child run per oracle trial, no more
    for trial_id, trial in completed.items():
        run = by_trial[trial_id]
        assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert run.data.tags[TAG_STATUS] == "COMPLETED" and run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in trial.hyperparameters.values.items()}
        values = trial.hyperparameters.values
        epochs_run = values.get("tuner/epochs", config.sweep.epochs) - values.get("tuner/initial_epoch", 0)
        history = mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(history) == epochs_run
        assert [m.step for m in history] == list(range(values.get("tuner/initial_epoch", 0), values.get("tuner/epochs", config.sweep.epochs)))
        assert run.data.metrics["objective"] == pytest.approx(trial.score)
        phases = [run.data.metrics[f"worker_{p}_seconds"] for p in ("build", "fit", "save")]
        assert all(s > 0 for s in phases) and sum(phases) < run.data.metrics["trial_seconds"]
        assert max(m.value for m in history) == pytest.approx(trial.score)

    # Warm workers: every trial ran in one of at most two reused processes, TensorFlow
    # limited to the trial's one CPU.
    pids = {run.data.tags["ktsweep.worker.pid"] for run in children}
    assert 1 <= len(pids) <= 2 < len(children)
    assert {run.data.tags["ktsweep.worker.threads"] for run in children} == {"1"}
    # The imports (TensorFlow's ~400,000 objects) are out of the cycle collector's walk, so that
    # clear_session's full collection costs ~10 ms instead of 0.2-0.3 s, twice per trial.
    assert all(int(run.data.tags["ktsweep.worker.gc_frozen"]) > 100_000 for run in children)
    # Each worker trains all its trials on one thread (TensorFlow keeps native state per thread).
    threads = {(run.data.tags["ktsweep.worker.pid"], run.data.tags["ktsweep.worker.thread"]) for run in children}
    assert len(threads) == len(pids)

    best = max(completed.values(), key=lambda t: t.score)
    assert outcome.best_trial_id == best.trial_id
    assert outcome.best_score == pytest.approx(best.score)


    version = mlflow_client.get_model_version_by_alias(registry_name, "champion")
    assert version.tags["ktsweep.trial_id"] == best.trial_id
    model = registered_model(f"models:/{registry_name}@champion")
    predictions = np.asarray(model.predict(dataset.x_val, verbose=0))
    accuracy = float(np.mean(predictions.argmax(axis=1) == dataset.y_val))
    assert accuracy == pytest.approx(best.score, abs=1e-6)
    assert math.isfinite(outcome.tracking_seconds)


@pytest.mark.backend
def test_hyperband_continues_from_the_parents_weights(run_sweep: Any, mlflow_client: Any) -> None:
    """The continued trial's first epoch is better than its parent's last: it did not start afresh."""
    narrow = [
        "tuner=hyperband", "sweep.epochs=3", "hypermodel.space.n_hidden.min=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_hidden.default=1",
        "hypermodel.space.n_neurons.min=32", "hypermodel.space.n_neurons.max=32",
        "hypermodel.space.optimizer.values=[adam]",
        "hypermodel.space.learning_rate.min=2e-3", "hypermodel.space.learning_rate.max=3e-3",
        "tracking.register=false",
    ]
    outcome, _ = run_sweep(*narrow)
    runs = {r.data.tags[TAG_TRIAL]: r for r in find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")}
    continued = [r for r in runs.values() if r.data.params.get("tuner/trial_id") not in (None, "None")]
    assert continued, "Hyperband made no continued trial"

    def losses(run: Any) -> list[float]:
        return [m.value for m in sorted(mlflow_client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)]

    for child in continued:
        parent = runs[child.data.params["tuner/trial_id"]]
        parent_losses, child_losses = losses(parent), losses(child)
        # From the parent's weights, one more epoch must beat where the parent stopped; from
        # fresh weights it would land near the parent's first epoch (random init, same hp).
        assert child_losses[0] < parent_losses[-1] * 0.85, (parent_losses, child_losses)


def test_final_ensemble_averages_the_best_trials_retrained(run_sweep: Any, mlflow_client: Any) -> None:
    """sweep.final.ensemble=2: the two best trials, retrained (as Ray tasks), averaged in one registered model
    whose test metrics are logged (the single retrained model: test_wide_deep.py)."""
    import json

    import mlflow

    from ktsweep.registry.bundle import BUNDLE, CARD_FILE

    outcome, config = run_sweep(*TINY, "sweep.max_trials=3", "sweep.final.retrain=true", "sweep.final.ensemble=2",
                                "tracking.registered_model=e2e-ensemble")
    assert outcome.status == "FINISHED", outcome.error
    assert set(outcome.test_metrics) >= {"test_accuracy", "test_loss"}
    oracle, dataset = oracle_of(outcome, config)
    best_two = sorted((t for t in oracle.trials.values() if t.status == "COMPLETED"), key=lambda t: -t.score)[:2]
    ids = [t.trial_id for t in best_two]
    parent = mlflow_client.get_run(outcome.parent_run_id)
    assert parent.data.tags["ktsweep.final"] == (
        f"ensemble of 2 trials ({', '.join(ids)}), each retrained for its best epoch count")
    assert parent.data.tags["ktsweep.published_trial"] == ",".join(ids)
    card = json.loads(mlflow.artifacts.load_text(f"runs:/{outcome.parent_run_id}/{BUNDLE}/{CARD_FILE}"))
    members = card["final"]["ensemble"]
    assert [m["trial_id"] for m in members] == ids
    assert [m["epochs"] for m in members] == [t.best_step + 1 for t in best_two]
    assert all("test_accuracy" in m["test_metrics"] for m in members)

    model = registered_model("models:/e2e-ensemble@champion")
    subs = [model.get_layer(f"member_{i}") for i in range(2)]
    for sub, trial in zip(subs, best_two):  # each member is its trial's architecture
        hidden = [layer.units for layer in sub.layers if hasattr(layer, "units")][:-1]
        assert hidden == [trial.hyperparameters.get("n_neurons")] * trial.hyperparameters.get("n_hidden")
    x = dataset.x_test
    averaged = np.mean([np.asarray(sub.predict(x, verbose=0)) for sub in subs], axis=0)
    predictions = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(predictions, averaged, atol=1e-6)
    accuracy = float(np.mean(predictions.argmax(axis=1) == dataset.y_test))
    assert accuracy == pytest.approx(outcome.test_metrics["test_accuracy"], abs=1e-6)
    assert parent.data.metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.backend
def test_fit_time_hyperparameters_and_tensorboard(run_sweep: Any, mlflow_client: Any, store_root: Any) -> None:
    """batch_size and normalize are tuned like any hyperparameter; TensorBoard gets hparams per trial."""
    outcome, _ = run_sweep("hypermodel=mlp_fit_tuned", *TINY, "sweep.max_trials=3", "sweep.callbacks.tensorboard=true",
                           "sweep.callbacks.early_stopping.enabled=true", "sweep.callbacks.early_stopping.patience=1",
                           "tracking.register=false")
    assert outcome.status == "FINISHED" and outcome.completed == 3
    runs = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    for run in runs:
        assert run.data.params["batch_size"] in {"16", "32", "64", "128"}
        assert run.data.params["normalize"] in {"True", "False"}
    logs = store_root / "sweeps" / outcome.name / "tensorboard"
    trial_dirs = sorted(p.name for p in logs.iterdir())
    assert trial_dirs == sorted(f"trial_{r.data.tags[TAG_TRIAL]}" for r in runs)
    for trial_dir in logs.iterdir():
        events = b"".join(p.read_bytes() for p in trial_dir.rglob("events.out.tfevents.*"))
        assert b"hparams" in events and b"epoch_loss" in events
