"""A Keras Tuner user's own code, unchanged: build_model(hp), kt.HyperModel subclasses, their data, their
configs, and the Python API. The user's modules live in a copied project folder that is on no path:
ktsweep makes it importable in the driver and in the (already running) Ray workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cli import KTSWEEP, copy_user_project, user_env

from ktsweep.core.errors import UsageError
from ktsweep.tracking.records import TAG_STATUS, TAG_TRIAL, find_runs

SMALL = ["sweep.epochs=2", "tracking.register=false", "sweep.report=false"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_user_project(tmp_path_factory.mktemp("user") / "project")


def trial_runs(client: Any, outcome: Any) -> list[Any]:
    return find_runs(client, outcome.experiment_id, sweep=outcome.name, kind="trial")


def digits(n: int = 900) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data[:n] / 16.0).astype("float32"), bunch.target[:n]


# -- config path: hypermodel._target_ and data._target_ ------------------------------------------


def test_build_model_function_sweeps_with_its_own_hyperparameters(run_sweep: Any, mlflow_client: Any, project: Path) -> None:
    outcome, _ = run_sweep(*SMALL, "hypermodel._target_=user_models.build_model", f"sweep.code_dir={project}",
                           "sweep.max_trials=3")
    assert outcome.status == "FINISHED" and outcome.completed == 3 and outcome.failed == 0
    runs = trial_runs(mlflow_client, outcome)
    assert len(runs) == 3
    for run in runs:
        assert {"units", "dropout", "lr"} <= set(run.data.params) and "n_hidden" not in run.data.params
        assert run.data.tags[TAG_STATUS] == "COMPLETED"


def test_hyperparameters_declared_in_fit_are_recorded_and_join_the_space(
    run_sweep: Any, mlflow_client: Any, project: Path
) -> None:
    outcome, config = run_sweep(*SMALL, "hypermodel._target_=user_models.MyClassificationHyperModel",
                                f"sweep.code_dir={project}", "sweep.max_trials=6")
    assert outcome.status == "FINISHED" and outcome.completed == 6
    runs = trial_runs(mlflow_client, outcome)
    assert all("normalize" in run.data.params for run in runs)  # the first trial's run included
    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"))
    oracle._set_project_dir(str(Path(config.sweep.root) / "sweeps" / outcome.name), "oracle")
    oracle.reload()
    assert "normalize" in [hp.name for hp in oracle.hyperparameters.space]


@pytest.mark.backend
def test_hyperband_hands_weights_to_a_model_without_an_input_layer(run_sweep: Any, mlflow_client: Any, project: Path) -> None:
    outcome, _ = run_sweep(*SMALL, "tuner=hyperband", "sweep.epochs=3", "hypermodel._target_=user_models.build_model",
                           f"sweep.code_dir={project}")
    assert outcome.status == "FINISHED" and outcome.failed == 0
    continued = [r for r in trial_runs(mlflow_client, outcome) if r.data.params.get("tuner/trial_id")]
    assert continued and all(r.data.tags[TAG_STATUS] == "COMPLETED" for r in continued)


def test_conditional_scopes_are_explored_as_keras_tuner_does(project: Path, tmp_path: Path) -> None:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.inputs import load_inputs
    from ktsweep.search.oracles import build_oracle

    config = validate(compose(["hypermodel._target_=user_models.build_conditional", f"sweep.code_dir={project}"]))
    inputs = load_inputs(config)
    oracle = build_oracle(config.tuner, objective="val_accuracy", direction="max", max_trials=4,
                          hypermodel=inputs.hypermodel, directory=str(tmp_path / "oracle"))
    names = [hp.name for hp in oracle.hyperparameters.space]
    assert {"model_type", "small_units", "wide_units"} <= set(names)


def test_bayesian_search_of_a_build_model_function(run_sweep: Any, project: Path) -> None:
    outcome, _ = run_sweep(*SMALL, "tuner=bayesian", "tuner.num_initial_points=2", "sweep.max_trials=3",
                           "hypermodel._target_=user_models.build_model", f"sweep.code_dir={project}")
    assert outcome.status == "FINISHED" and outcome.completed == 3


def test_npz_with_image_shaped_arrays(run_sweep: Any, tmp_path: Path) -> None:
    x, y = digits()
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=x.reshape(-1, 8, 8)[:700], y_train=y[:700], x_test=x.reshape(-1, 8, 8)[700:], y_test=y[700:])
    outcome, _ = run_sweep(*SMALL, "data=npz", f"data.path={path}", "sweep.max_trials=2",
                           "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=16")
    assert outcome.status == "FINISHED" and outcome.completed == 2
    assert set(outcome.test_metrics) >= {"test_accuracy"}  # the npz's own test split


def test_user_data_loader_returning_three_splits(run_sweep: Any, project: Path) -> None:
    outcome, config = run_sweep(*SMALL, "data._target_=user_data.load_splits", f"sweep.code_dir={project}",
                                "sweep.max_trials=1", "hypermodel.space.n_hidden.max=1")
    assert outcome.status == "FINISHED"
    from ktsweep.search.inputs import load_data

    dataset = load_data(config)
    assert dataset.sizes() == {"train": 600, "val": 150, "test": 150} and dataset.x_train.shape[1:] == (8, 8)
    assert dataset.task == "classification" and dataset.n_classes == 10 and dataset.name == "load_splits"


# -- bad input: one line each, before anything trains ---------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hypermodel._target_=math.pi"], r"hypermodel math\.pi is a float: expected a build_model\(hp\) function"),
        (["hypermodel._target_=collections.OrderedDict"], r"is a class but not a keras_tuner\.HyperModel"),
        (["hypermodel._target_=user_models.returns_nothing"], r"returned NoneType, expected a compiled keras\.Model"),
        (["data._target_=user_data.load_mismatched"], r"x_train has 900 rows but y_train has 895"),
    ],
)
def test_bad_user_code_is_one_line(overrides: list[str], message: str, project: Path, tmp_path: Path) -> None:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.inputs import load_inputs
    from ktsweep.search.oracles import build_oracle

    config = validate(compose([*overrides, f"sweep.code_dir={project}"]))
    with pytest.raises(UsageError, match=message):
        inputs = load_inputs(config)
        build_oracle(config.tuner, objective="val_accuracy", direction="max", max_trials=2,
                     hypermodel=inputs.hypermodel, directory=str(tmp_path / "oracle"))


def test_data_errors(tmp_path: Path) -> None:
    from ktsweep.data.loaders import dataset_from_arrays, load_npz, load_table

    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(UsageError, match=r"wrong\.npz lacks x_train and y_train; it has x, labels"):
        load_npz(name="n", path=str(tmp_path / "wrong.npz"), val_fraction=0.2, test_fraction=0.2, seed=0)
    (tmp_path / "one.csv").write_text("a,label\n" + "".join(f"{i},yes\n" for i in range(20)))
    with pytest.raises(UsageError, match=r"target 'label' has a single class \('yes'\)"):
        load_table(name="t", path=str(tmp_path / "one.csv"), target="label", val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(UsageError, match="single class"):
        dataset_from_arrays((np.zeros((10, 3)), np.ones(10, dtype=int)), name="a", source="s")
    one_hot = np.eye(3)[np.arange(30) % 3]
    data = dataset_from_arrays((np.zeros((30, 2)), one_hot), name="a", source="s", test_fraction=0.0)
    assert data.task == "classification" and data.n_classes == 3 and data.y_train.shape[1] == 3
    regression = dataset_from_arrays((np.zeros((30, 2)), np.linspace(0, 1, 30)), name="a", source="s")
    assert regression.task == "regression" and sum(regression.sizes().values()) == 30


# -- Python API -------------------------------------------------------------------------------------


def test_python_api_with_a_ready_random_search_tuner(ray_session: Any, store_root: Path, mlflow_client: Any,
                                                     project: Path, tmp_path: Path) -> None:
    import keras_tuner as kt

    import ktsweep
    from ktsweep.core.user_code import add_to_path

    add_to_path(str(project))
    from user_models import build_model

    x, y = digits()
    tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=3, seed=42,
                            directory=str(tmp_path), project_name="kt")
    result = ktsweep.sweep(tuner, x[:600], y[:600], epochs=2, validation_data=(x[600:], y[600:]),
                           root=str(store_root), register=False)
    assert result.status == "FINISHED" and result.completed == 3
    assert len(tuner.oracle.trials) == 3  # what tuner.search would have run
    best_hp = tuner.get_best_hyperparameters()[0]
    assert best_hp.values == result.best_hyperparameters
    predictions = tuner.get_best_models(1)[0].predict(x[:4], verbose=0)
    assert predictions.shape == (4, 10)
    np.testing.assert_allclose(predictions, result.best_model().predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)
    tuner.results_summary(1)
    assert len(trial_runs(mlflow_client, _outcome_like(result, mlflow_client))) == 3


def _outcome_like(result: Any, client: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(experiment_id=client.get_run(result.run_id).info.experiment_id, name=result.name)


def test_python_api_hyperband_with_an_early_stopping_callback(ray_session: Any, store_root: Path, mlflow_client: Any,
                                                            project: Path, tmp_path: Path) -> None:
    import keras
    import keras_tuner as kt

    import ktsweep
    from ktsweep.core.user_code import add_to_path

    add_to_path(str(project))
    from user_models import MyClassificationHyperModel

    x, y = digits(600)
    make = lambda name: kt.Hyperband(MyClassificationHyperModel(), objective="val_accuracy", max_epochs=3, factor=3,  # noqa: E731
                                     seed=1, directory=str(tmp_path), project_name=name)
    plain = make("plain")
    plain.search(x[:450], y[:450], validation_data=(x[450:], y[450:]), verbose=0)
    tuner = make("ktsweep")
    # min_delta=1: no epoch "improves", so every trial stops after patience + 1 = 2 epochs.
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=1, min_delta=1.0)
    result = ktsweep.sweep(tuner, x[:450], y[:450], validation_data=(x[450:], y[450:]), callbacks=[stop],
                           root=str(store_root), register=False)
    assert result.status == "FINISHED"
    assert len(tuner.oracle.trials) == len(plain.oracle.trials)  # the same brackets as tuner.search
    runs = trial_runs(mlflow_client, _outcome_like(result, mlflow_client))
    three = [r for r in runs if r.data.params["tuner/epochs"] == "3" and r.data.params["tuner/initial_epoch"] == "0"]
    assert three, "no trial was given 3 epochs"
    for run in three:  # the user's EarlyStopping ran in every trial
        assert len(mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert all("normalize" in r.data.params for r in runs)
    assert tuner.get_best_models(1)[0].predict(x[:2], verbose=0).shape == (2, 10)


@pytest.mark.parametrize(
    ("target", "message"),
    [("random", r"first argument is the model, not 'random'; pass tuner='random'"),
     (3, r"hypermodel 3 is a int: expected a build_model\(hp\) function")],
)
def test_python_api_rejects_what_is_not_a_model_or_tuner(target: Any, message: str) -> None:
    import ktsweep

    x, y = digits(50)
    with pytest.raises(UsageError, match=message):
        ktsweep.sweep(target, x, y)


def test_python_api_rejects_arrays_of_different_lengths(project: Path) -> None:
    import ktsweep
    from ktsweep.core.user_code import add_to_path

    add_to_path(str(project))
    from user_models import build_model

    x, y = digits(50)
    with pytest.raises(UsageError, match="x_train has 50 rows but y_train has 40"):
        ktsweep.sweep(build_model, x, y[:40], root="/nonexistent-never-written")


def test_import_ktsweep_is_light() -> None:
    probe = "import sys, ktsweep; print(sorted(m for m in ('tensorflow', 'ray', 'mlflow', 'keras') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# -- the whole path, as a user runs it ---------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.slow
def test_user_project_through_the_cli(tmp_path: Path) -> None:
    """From the user's folder (own conf/ with config.yaml, own search.py), no PYTHONPATH: a build_model
    target, then the user's own config groups through --config-dir, then pull."""
    project = copy_user_project(tmp_path / "project")
    env = {k: v for k, v in user_env().items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KTSWEEP, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)

    done = run("run", "hypermodel._target_=user_models.build_model", "sweep.max_trials=2", "sweep.epochs=2",
               "sweep.name=fn", "sweep.report=false")
    assert done.returncode == 0, done.stderr[-3000:]
    done = run("run", "--config-dir", "./conf", "hypermodel=mine", "data=mine", "sweep.objective=val_accuracy",
               "sweep.max_trials=2", "sweep.epochs=2", "sweep.name=mine", "sweep.report=false")
    assert done.returncode == 0, done.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/ktsweep-runs/mlflow.db")
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    for sweep, names in (("fn", {"units", "dropout", "lr"}), ("mine", {"units", "dropout", "lr", "normalize"})):
        runs = find_runs(client, experiment, sweep=sweep, kind="trial")
        assert len(runs) == 2 and all(r.info.status == "FINISHED" and names <= set(r.data.params) for r in runs)
        assert all(r.data.tags[TAG_TRIAL] for r in runs)
    done = run("pull", "mine", "--out", str(tmp_path / "model"))
    assert done.returncode == 0, done.stderr[-3000:]
    import keras

    model = keras.models.load_model(tmp_path / "model" / "model.keras", safe_mode=True)
    assert model.predict(np.zeros((2, 8, 8), "float32"), verbose=0).shape == (2, 10)  # the loader's 8x8 images
