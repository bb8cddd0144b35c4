"""Wide & deep (functional and subclassed): two inputs, two outputs, saved and loaded intact, swept end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ktsweep.tracking.records import TAG_TRIAL, find_runs

SPLIT = dict(val_fraction=0.15, test_fraction=0.2, seed=42)
TINY = [
    "experiment=housing_wide_deep", "sweep.max_trials=2", "sweep.epochs=1",
    "hypermodel.space.n_neurons.min=8", "hypermodel.space.n_neurons.max=16",
    "hypermodel.space.n_hidden.min=1", "hypermodel.space.n_hidden.max=2",
]
MODELS = {"functional": "WideDeepRegressor", "subclassed": "SubclassedWideDeepRegressor"}


def hypermodel_of(kind: str, housing: Any, **overrides: Any) -> Any:
    from ktsweep import hypermodels
    from ktsweep.conf.schema import LossWeights, MLPSpace

    kwargs = dict(
        space=MLPSpace(), wide_features=[0, 1, 2, 3, 4], deep_features=[2, 3, 4, 5, 6, 7],
        loss_weights=LossWeights(main=0.9, aux=0.1), normalize=True, objective="val_main_rmse", direction="min",
        data_spec=housing.spec,
    )
    return getattr(hypermodels, MODELS[kind])(**{**kwargs, **overrides})


@pytest.mark.backend
@pytest.mark.parametrize("kind", list(MODELS))
def test_two_inputs_two_outputs_survive_save_and_load(kind: str, housing: Any, tmp_path: Path) -> None:
    import keras
    import keras_tuner as kt

    hypermodel = hypermodel_of(kind, housing)
    model = hypermodel.build(kt.HyperParameters())
    inputs = hypermodel.model_inputs(housing.x_train[:512])
    assert {k: v.shape[1] for k, v in inputs.items()} == {"wide": 5, "deep": 6}
    np.testing.assert_array_equal(inputs["wide"], housing.x_train[:512, :5])
    history = model.fit(inputs, hypermodel.model_targets(housing.y_train[:512]), epochs=1, verbose=0)
    assert {"main_loss", "aux_loss", "main_rmse", "aux_rmse"} <= set(history.history)
    # loss = 0.9 main + 0.1 aux: the configured weights reach compile().
    logs = model.evaluate(inputs, hypermodel.model_targets(housing.y_train[:512]), return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(0.9 * logs["main_loss"] + 0.1 * logs["aux_loss"], rel=1e-4)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    if kind == "subclassed":
        assert type(loaded).__name__ == "WideDeepModel"
    x = hypermodel.model_inputs(housing.x_test[:50])
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert set(before) == set(after) == {"main", "aux"}
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_feature_columns_out_of_range_are_one_clear_line(run_sweep: Any) -> None:
    from ktsweep.core.errors import UsageError

    with pytest.raises(UsageError, match=r"hypermodel\.deep_features=\[2, 9\] names column 9, but the data has 8 features"):
        run_sweep(*TINY, "hypermodel.deep_features=[2,9]")


@pytest.mark.parametrize("kind", ["wide_deep", pytest.param("wide_deep_subclassed", marks=pytest.mark.backend)])
def test_housing_wide_deep_sweep_retrains_registers_and_pulls(
    kind: str, run_sweep: Any, mlflow_client: Any, store_root: Path, tmp_path: Path
) -> None:
    """The preset end to end: trials, a ModelCheckpoint file per trial, retrain + test, pull verified."""
    import keras

    from ktsweep.registry.pull import pull

    registry = f"housing-{kind}"
    outcome, config = run_sweep(*TINY, f"hypermodel={kind}", "sweep.callbacks.model_checkpoint=true",
                                f"tracking.registered_model={registry}")
    assert outcome.status == "FINISHED" and outcome.completed == 2, outcome.error
    assert config.sweep.objective == "val_main_rmse"
    assert {"test_main_rmse", "test_aux_rmse", "test_loss"} <= set(outcome.test_metrics)
    parent = mlflow_client.get_run(outcome.parent_run_id)
    assert parent.data.metrics["test_main_rmse"] == pytest.approx(outcome.test_metrics["test_main_rmse"])
    assert parent.data.tags["ktsweep.final"].startswith("retrained for")

    from ktsweep.data.loaders import load_california_housing
    from ktsweep.search.inputs import load_hypermodel

    housing = load_california_housing(name="housing", **SPLIT)
    hypermodel = load_hypermodel(config, housing)

    def main_rmse(model: Any, x: np.ndarray, y: np.ndarray) -> float:
        logs = model.evaluate(hypermodel.model_inputs(x), hypermodel.model_targets(y), return_dict=True, verbose=0)
        return logs["main_rmse"]

    runs = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    saved = store_root / "sweeps" / outcome.name / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == sorted(f"trial_{r.data.tags[TAG_TRIAL]}.keras" for r in runs)
    for run in runs:  # ModelCheckpoint kept the trial's best epoch: it reproduces the trial's objective
        model = keras.models.load_model(saved / f"trial_{run.data.tags[TAG_TRIAL]}.keras", safe_mode=True)
        assert main_rmse(model, housing.x_val, housing.y_val) == pytest.approx(run.data.metrics["objective"], rel=1e-3)

    pulled = pull(mlflow_client, outcome.experiment_id, f"{registry}@champion", out=str(tmp_path / "out"))
    assert pulled.checked == 5
    model = keras.models.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    assert main_rmse(model, housing.x_test, housing.y_test) == pytest.approx(outcome.test_metrics["test_main_rmse"], rel=1e-4)
