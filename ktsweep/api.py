"""``ktsweep.sweep``: the Python API, for notebooks and scripts.

``tuner.search(x, y, epochs=5, validation_data=(x_val, y_val))`` becomes
``ktsweep.sweep(tuner, x, y, epochs=5, validation_data=(x_val, y_val))``: the same
tuner (its HyperModel, its oracle, objective and seed), trials on Ray, records in
MLflow, and the tuner's own oracle and trial folders updated, so
``tuner.get_best_hyperparameters()``, ``tuner.get_best_models()`` and
``tuner.results_summary()`` answer as after ``tuner.search``. Or, without a tuner,
``ktsweep.sweep(build_model, x, y, tuner="hyperband", objective="val_accuracy", max_epochs=10)``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal, Optional, Sequence

from ktsweep.core.errors import UsageError

Strategy = Literal["random", "hyperband", "bayesian", "grid"]


@dataclass
class SweepResult:
    """What a sweep produced, with the best model one call away."""

    name: str
    status: str
    best_hyperparameters: dict[str, Any]
    best_metrics: dict[str, float]
    best_trial_id: Optional[str]
    objective: str
    best_score: Optional[float]
    completed: int
    failed: int
    run_id: str  # the sweep's parent run in MLflow
    tracking_uri: str
    registered_model: Optional[str] = None
    model_version: Optional[str] = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_path: Optional[str] = None  # the published model file (model.keras)

    def best_model(self, *, safe_mode: bool = True) -> Any:
        """The sweep's published model (retrained if ``sweep.final.retrain``; the average of the best
        trials' models with ``sweep.final.ensemble``), loaded with Keras."""
        import keras

        if not self.model_path or not os.path.exists(self.model_path):
            raise UsageError(f"sweep {self.name} published no model (no completed trial, or it was interrupted)")
        return keras.models.load_model(self.model_path, safe_mode=safe_mode)


def _is_tuner(obj: Any) -> bool:
    import keras_tuner as kt

    return isinstance(obj, kt.engine.base_tuner.BaseTuner)


def _strategy_of(oracle: Any) -> str:
    from ktsweep.conf.schema.tuner import strategy_name

    return strategy_name(type(oracle).__name__)


def _objective_of(oracle: Any) -> tuple[str, str]:
    import keras_tuner as kt

    objective = oracle.objective
    if isinstance(objective, kt.src.engine.objective.MultiObjective):
        raise UsageError("ktsweep sweeps one objective; give the tuner objective=\"val_loss\" (or another single metric)")
    return objective.name, objective.direction


def _splits(x: Any, y: Any, validation_data: Any, test_data: Any) -> dict[str, Any]:
    import numpy as np

    if x is None or y is None:
        raise UsageError("ktsweep.sweep needs x and y (arrays), as tuner.search does")
    for label, value in (("x", x), ("y", y)):
        if isinstance(value, dict) or not hasattr(value, "__len__"):
            raise UsageError(f"{label} must be an array (NumPy, or anything np.asarray takes); got {type(value).__name__}")
    splits = {"x_train": np.asarray(x), "y_train": np.asarray(y)}
    for part, given in (("val", validation_data), ("test", test_data)):
        if given is not None:
            if not (isinstance(given, (tuple, list)) and len(given) == 2):
                raise UsageError(f"{part}idation_data must be (x, y)" if part == "val" else "test_data must be (x, y)")
            splits[f"x_{part}"], splits[f"y_{part}"] = np.asarray(given[0]), np.asarray(given[1])
    return splits


def sweep(
    target: Any,
    x: Any = None,
    y: Any = None,
    *,
    validation_data: Optional[tuple[Any, Any]] = None,
    validation_split: float = 0.2,
    test_data: Optional[tuple[Any, Any]] = None,
    epochs: Optional[int] = None,
    callbacks: Optional[list] = None,
    batch_size: Optional[int] = None,
    tuner: Strategy = "random",
    objective: Optional[str] = None,
    direction: Optional[Literal["min", "max"]] = None,
    max_trials: Optional[int] = None,
    max_epochs: Optional[int] = None,
    seed: Optional[int] = None,
    name: Optional[str] = None,
    data_name: str = "arrays",
    root: str = "ktsweep-runs",
    tracking_uri: Optional[str] = None,
    address: Optional[str] = None,
    max_concurrent: Optional[int] = None,
    cpus_per_trial: float = 1.0,
    register: bool = True,
    registered_model: Optional[str] = None,
    overrides: Sequence[str] = (),
) -> SweepResult:
    """Run a sweep of ``target`` (a Keras Tuner tuner, a ``build_model(hp)`` or a ``kt.HyperModel``) on ``x, y``.

    With a tuner, its oracle decides (``tuner=``, ``objective=``, ``max_trials=``... come from it); else
    ``tuner=`` picks the strategy. ``validation_data`` as in ``fit``; without it ``validation_split`` of
    the data is held out (the objective is measured on it). ``test_data`` gets one final evaluation.
    Any other setting is a Hydra override (``overrides=["sweep.final.retrain=true"]``), as on the CLI.
    """
    from keras_tuner.src.engine.hypermodel import DefaultHyperModel
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.data.loaders import dataset_from_arrays
    from ktsweep.search.inputs import SweepInputs, as_hypermodel, describe
    from ktsweep.search.flow import run_sweep
    from ktsweep.core.user_code import module_root

    given_tuner = target if _is_tuner(target) else None
    if given_tuner is not None:
        oracle = given_tuner.oracle
        hypermodel = given_tuner.hypermodel
        objective, direction = _objective_of(oracle)
        strategy = _strategy_of(oracle)
        max_trials = oracle.max_trials
        seed = oracle.seed
        max_epochs = getattr(oracle, "max_epochs", None)
    else:
        if isinstance(target, str):
            raise UsageError(f"ktsweep.sweep's first argument is the model, not {target!r}; pass tuner={target!r}")
        oracle = None
        hypermodel = as_hypermodel(target, {}, label=describe(target) if callable(target) else repr(target))
        strategy = tuner
    if strategy not in ("random", "hyperband", "bayesian", "grid"):
        raise UsageError(f"tuner={strategy!r}: expected random, hyperband, bayesian or grid (or a Keras Tuner tuner)")
    epochs = epochs or (max_epochs if strategy == "hyperband" else None) or 1  # Keras' fit() default
    settings = {
        "tuner": strategy, "sweep.epochs": epochs, "sweep.root": root, "sweep.name": name,
        "sweep.objective": objective or "val_loss", "sweep.direction": direction, "sweep.batch_size": batch_size,
        "sweep.seed": seed, "tuner.max_trials": max_trials, "data.name": data_name,
        "tracking.uri": tracking_uri, "tracking.register": register, "tracking.registered_model": registered_model,
        "executor.address": address, "executor.max_concurrent": max_concurrent, "executor.cpus_per_trial": cpus_per_trial,
    }
    # The user's module may be importable here from another folder than the working one (sys.path.append):
    # the workers import it from there too.
    settings["sweep.code_dir"] = module_root(
        hypermodel.build if isinstance(hypermodel, DefaultHyperModel) else type(hypermodel)
    )
    if strategy == "hyperband" and max_epochs:
        settings["tuner.max_epochs"] = max_epochs
    if strategy == "bayesian" and given_tuner is None:
        settings["tuner.max_trials"] = max_trials or 10
    args = [f"{key}={_override_value(value)}" for key, value in settings.items() if value is not None]
    cfg = compose([*args, *overrides])
    config = validate(cfg)

    splits = _splits(x, y, validation_data, test_data)
    dataset = dataset_from_arrays(splits, name=data_name, source="ktsweep.sweep(x, y)", val_fraction=validation_split,
                                  test_fraction=0.0, seed=config.sweep.seed)
    # The config records what ran; the objects themselves come in through `inputs`.
    config.hypermodel = SimpleNamespace(_target_=describe(target if given_tuner is None else hypermodel))
    config.data = SimpleNamespace(_target_="ktsweep.sweep", name=data_name)
    if oracle is not None:
        config.tuner._target_ = f"{type(oracle).__module__}.{type(oracle).__name__}"
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["hypermodel"], plain["data"] = vars(config.hypermodel), {**vars(config.data), "sizes": dataset.sizes()}
    inputs = SweepInputs(dataset=dataset, hypermodel=hypermodel, oracle=oracle, keras_callbacks=list(callbacks or []))
    verbose = getattr(oracle, "verbose", None)
    if oracle is not None:
        oracle.verbose = 0  # ktsweep's progress lines replace the oracle's own printout
    try:
        outcome = run_sweep(config, resolved_yaml=OmegaConf.to_yaml(OmegaConf.create(plain)), overrides=args,
                            inputs=inputs)
    finally:
        if oracle is not None:
            oracle.verbose = verbose
    sweep_dir = os.path.join(os.path.abspath(config.sweep.root), "sweeps", outcome.name)
    if given_tuner is not None:
        _fill_tuner_trials(given_tuner, sweep_dir)
    return _result(outcome, sweep_dir, inputs.oracle)


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and any(c in value for c in " ,:=[]{}'\""):
        return json.dumps(value)
    return str(value)


def _fill_tuner_trials(tuner: Any, sweep_dir: str) -> None:
    """Each completed trial's weights and build config where the tuner's ``load_model`` looks for them.

    They are copied out of the trial's saved ``.keras`` file (a zip holding ``model.weights.h5``, the
    same format and content as ``save_weights`` writes, and ``config.json`` with the build config):
    no model is rebuilt.
    """
    from ray.tune import Checkpoint

    from ktsweep.search.searcher import read_checkpoint_index
    from ktsweep.execution.trainable import MODEL_FILE

    for trial_id, path in read_checkpoint_index(tuner.oracle._project_dir).items():
        trial = tuner.oracle.trials.get(trial_id)
        if trial is None or trial.status != "COMPLETED":
            continue
        os.makedirs(tuner.get_trial_dir(trial_id), exist_ok=True)
        weights = tuner._get_checkpoint_fname(trial_id)
        with Checkpoint(path).as_directory() as directory, zipfile.ZipFile(os.path.join(directory, MODEL_FILE)) as saved:
            with saved.open("model.weights.h5") as src, open(weights, "wb") as dst:
                dst.write(src.read())
            build_config = json.loads(saved.read("config.json")).get("build_config")
        if build_config is not None:
            with open(tuner._get_build_config_fname(trial_id), "w") as fh:
                json.dump(build_config, fh)
    tuner.save()


def _result(outcome: Any, sweep_dir: str, oracle: Any) -> SweepResult:
    from ktsweep.execution.trainable import MODEL_FILE

    best: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    if outcome.best_trial_id is not None:
        trial = oracle.trials[outcome.best_trial_id]
        best = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        metrics = {key: float(trial.metrics.get_best_value(key)) for key in trial.metrics.metrics}
    model_path = os.path.join(sweep_dir, "final", MODEL_FILE)
    return SweepResult(
        name=outcome.name, status=outcome.status, best_hyperparameters=best, best_metrics=metrics,
        best_trial_id=outcome.best_trial_id, objective=outcome.objective, best_score=outcome.best_score,
        completed=outcome.completed, failed=outcome.failed, run_id=outcome.parent_run_id,
        tracking_uri=outcome.tracking_uri, registered_model=outcome.registered_model,
        model_version=outcome.model_version, test_metrics=dict(outcome.test_metrics),
        model_path=model_path if os.path.exists(model_path) else None,
    )
