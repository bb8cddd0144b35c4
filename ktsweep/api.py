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
from typing import Any, Literal, Optional, Sequence, Union

from ktsweep.core.errors import UsageError

Strategy = Literal["random", "hyperband", "bayesian", "grid", "motpe", "nsga2"]


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
    # With several objectives: the trials no other beats on all of them, each {"trial_id", "values", "hyperparameters"}
    pareto_front: list[dict[str, Any]] = field(default_factory=list)
    promotion: Optional[str] = None  # what became of the model: why it is (or is not) the champion, or why none was published

    def best_model(self, *, safe_mode: bool = True) -> Any:
        """The sweep's published model (retrained if ``sweep.final.retrain``; the average of the best
        trials' models with ``sweep.final.ensemble``), loaded with Keras."""
        import keras

        if not self.model_path or not os.path.exists(self.model_path):
            why = self.promotion or "no completed trial, or it was interrupted"
            raise UsageError(f"sweep {self.name} published no model ({why})")
        return keras.models.load_model(self.model_path, safe_mode=safe_mode)


def _is_tuner(obj: Any) -> bool:
    import keras_tuner as kt

    return isinstance(obj, kt.engine.base_tuner.BaseTuner)


def _strategy_of(oracle: Any) -> str:
    from ktsweep.conf.schema.tuner import strategy_name

    return strategy_name(type(oracle).__name__)


def _objective_of(oracle: Any) -> tuple[Any, Optional[str]]:
    """A tuner's objective, or its list of objectives as ``sweep.objectives`` entries (kept apart on a
    Pareto front; its oracle still goes by Keras Tuner's sum of them)."""
    objectives = getattr(oracle.objective, "objectives", None)
    if objectives:
        return [f"{o.name}:{o.direction}" for o in objectives], None
    return oracle.objective.name, oracle.objective.direction


@dataclass
class _Given:
    """What ``sweep`` was given to train on: arrays (pipelines read into arrays), or a loader for the workers."""

    x: Any
    y: Any
    validation_data: Any
    test_data: Any
    batch_size: Optional[int]
    loader: Any = None  # data=make_datasets: runs in each worker


def _given(x: Any, y: Any, validation_data: Any, test_data: Any, *, data: Any, batch_size: Optional[int],
           limit_mb: float) -> _Given:
    """A ``tf.data.Dataset`` or ``PyDataset`` as ``tuner.search`` takes it: finite and small, read into arrays once
    here (its batch size kept, unless ``batch_size`` is given); else one line pointing to ``data=``."""
    from ktsweep.data.feeds import is_pipeline
    from ktsweep.data.pipelines import materialise

    if data is not None:
        if any(value is not None for value in (x, y, validation_data, test_data)):
            raise UsageError("give either data= (a function run in each worker, returning train, validation and "
                             "optionally test) or x, y, validation_data, test_data; not both")
        if not callable(data):
            raise UsageError(f"data= must be a function that returns (train, validation[, test]); got "
                             f"{type(data).__name__} (pass arrays or a dataset as x instead)")
        return _Given(None, None, None, None, batch_size, loader=data)
    if is_pipeline(x):
        if y is not None:
            raise UsageError(f"y must not be given when x is a {type(x).__name__}: the dataset yields (x, y) batches, "
                             "as in model.fit")
        x, y, batch = materialise(x, limit_mb=limit_mb, label=f"x (a {type(x).__name__})")
        batch_size = batch_size or batch
    parts = {"validation_data": validation_data, "test_data": test_data}
    for key, value in parts.items():
        if is_pipeline(value):
            parts[key] = materialise(value, limit_mb=limit_mb, label=f"{key} (a {type(value).__name__})")[:2]
    return _Given(x, y, parts["validation_data"], parts["test_data"], batch_size)


def _splits(x: Any, y: Any, validation_data: Any, test_data: Any) -> dict[str, Any]:
    import numpy as np

    if x is None or y is None:
        raise UsageError("ktsweep.sweep needs data: x and y arrays, a tf.data.Dataset or PyDataset as x, or "
                         "data=make_datasets (a function each worker runs), as tuner.search takes them")
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
    data: Any = None,
    validation_data: Any = None,
    validation_split: float = 0.2,
    test_data: Optional[tuple[Any, Any]] = None,
    epochs: Optional[int] = None,
    callbacks: Optional[list] = None,
    batch_size: Optional[int] = None,
    tuner: Strategy = "random",
    scheduler: Optional[Literal["asha", "median", "pbt"]] = None,
    objective: Union[str, Sequence[str], None] = None,
    direction: Optional[Literal["min", "max"]] = None,
    select: Optional[str] = None,
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
    steps_per_epoch: Optional[int] = None,
    validation_steps: Optional[int] = None,
    max_materialise_mb: float = 512.0,
    overrides: Sequence[str] = (),
) -> SweepResult:
    """Run a sweep of ``target`` (a Keras Tuner tuner, a ``build_model(hp)`` or a ``kt.HyperModel``) on what
    ``tuner.search`` takes: ``x, y`` arrays, or a ``tf.data.Dataset`` / ``keras.utils.PyDataset`` as ``x``.

    With a tuner, its oracle decides (``tuner=``, ``objective=``, ``max_trials=``... come from it); else
    ``tuner=`` picks the strategy; ``scheduler=`` adds early stopping (``asha``, ``median``) or Population
    Based Training (``pbt``). ``validation_data`` as in ``fit``; without it ``validation_split`` of
    the data is held out (the objective is measured on it). ``test_data`` gets one final evaluation.
    A dataset is read into arrays once (up to ``max_materialise_mb``) and shipped to the workers; for a
    larger or endless one pass ``data=make_datasets``, a function that returns ``(train, validation[, test])``
    and runs in each worker instead (``steps_per_epoch`` for an endless one).
    Any other setting is a Hydra override (``overrides=["sweep.final.retrain=true"]``), as on the CLI.
    """
    _load_engine()
    search = _search_of(target, strategy=tuner, objective=objective, direction=direction, max_trials=max_trials,
                        seed=seed, max_epochs=max_epochs)
    given = _given(x, y, validation_data, test_data, data=data, batch_size=batch_size, limit_mb=max_materialise_mb)
    args = _override_args(search, epochs=epochs, root=root, name=name, batch_size=given.batch_size, data_name=data_name,
                          tracking_uri=tracking_uri, register=register, registered_model=registered_model,
                          address=address, max_concurrent=max_concurrent, cpus_per_trial=cpus_per_trial,
                          steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, scheduler=scheduler,
                          select=select)
    cfg, config = _config_of(args, overrides)
    if given.loader is not None:
        from ktsweep.search.inputs import load_in_workers

        dataset = load_in_workers(config, given.loader, name=data_name)
    else:
        dataset = _dataset_of(given.x, given.y, given.validation_data, given.test_data,
                              validation_split=validation_split, name=data_name, seed=config.sweep.seed)
    inputs, record = _inputs_of(target, search, dataset, callbacks, cfg=cfg, config=config, data_name=data_name,
                                loader=given.loader)
    outcome = _run(config, record, args, inputs, oracle=search.oracle)
    return _finished(outcome, config.sweep.root, search.given_tuner, inputs.oracle)


def _load_engine() -> None:
    """Loaded first, in this order, before any argument is checked: ``ktsweep.search.flow`` sets TensorFlow's,
    Ray's and MLflow's environment variables as it loads, ahead of the config's checks importing user code."""
    import keras_tuner.src.engine.hypermodel  # noqa: F401
    import omegaconf  # noqa: F401

    import ktsweep.conf.compose  # noqa: F401
    import ktsweep.core.user_code  # noqa: F401
    import ktsweep.data.loaders  # noqa: F401
    import ktsweep.search.flow  # noqa: F401
    import ktsweep.search.inputs  # noqa: F401


@dataclass
class _Search:
    """What decides the search: a given tuner's oracle, else ``sweep``'s own keyword arguments."""

    given_tuner: Any  # None: the engine builds the oracle from the config
    oracle: Any
    hypermodel: Any
    strategy: str
    objective: Any  # a name, or a list of them (several objectives)
    direction: Optional[str]
    max_trials: Optional[int]
    seed: Optional[int]
    max_epochs: Optional[int]


def _search_of(target: Any, *, strategy: str, objective: Any, direction: Optional[str],
               max_trials: Optional[int], seed: Optional[int], max_epochs: Optional[int]) -> _Search:
    """A tuner's oracle wins over the keyword arguments, so the sweep runs what ``tuner.search`` would."""
    from ktsweep.search.inputs import as_hypermodel, describe

    given_tuner = target if _is_tuner(target) else None
    if given_tuner is not None:
        oracle = given_tuner.oracle
        hypermodel = given_tuner.hypermodel
        objective, direction = _objective_of(oracle)
        search = _Search(given_tuner, oracle, hypermodel, _strategy_of(oracle), objective, direction,
                         oracle.max_trials, oracle.seed, getattr(oracle, "max_epochs", None))
    else:
        if isinstance(target, str):
            raise UsageError(f"ktsweep.sweep's first argument is the model, not {target!r}; pass tuner={target!r}")
        hypermodel = as_hypermodel(target, {}, label=describe(target) if callable(target) else repr(target))
        search = _Search(None, None, hypermodel, strategy, objective, direction, max_trials, seed, max_epochs)
    if search.strategy not in ("random", "hyperband", "bayesian", "grid", "motpe", "nsga2"):
        raise UsageError(
            f"tuner={search.strategy!r}: expected random, hyperband, bayesian, grid, motpe or nsga2 (or a Keras Tuner tuner)"
        )
    return search


def _override_args(search: _Search, *, epochs: Optional[int], root: str, name: Optional[str],
                   batch_size: Optional[int], data_name: str, tracking_uri: Optional[str], register: bool,
                   registered_model: Optional[str], address: Optional[str], max_concurrent: Optional[int],
                   cpus_per_trial: float, steps_per_epoch: Optional[int], validation_steps: Optional[int],
                   scheduler: Optional[str] = None, select: Optional[str] = None) -> list[str]:
    """The arguments as Hydra overrides, so the config is composed, checked and saved as the CLI's is."""
    from keras_tuner.src.engine.hypermodel import DefaultHyperModel

    from ktsweep.core.user_code import module_root

    strategy, max_epochs = search.strategy, search.max_epochs
    epochs = epochs or (max_epochs if strategy == "hyperband" else None) or 1  # Keras' fit() default
    settings = {
        "tuner": strategy, "sweep.epochs": epochs, "sweep.root": root, "sweep.name": name,
        **_objective_settings(search.objective, search.direction),
        "sweep.batch_size": batch_size, "sweep.seed": search.seed, "tuner.max_trials": search.max_trials,
        "data.name": data_name, "tracking.uri": tracking_uri, "tracking.register": register,
        "tracking.registered_model": registered_model, "executor.address": address,
        "executor.max_concurrent": max_concurrent, "executor.cpus_per_trial": cpus_per_trial,
        "sweep.steps_per_epoch": steps_per_epoch, "sweep.validation_steps": validation_steps,
        "scheduler": scheduler, "sweep.select": select,
    }
    # The user's module may be importable here from another folder than the working one (sys.path.append):
    # the workers import it from there too.
    hypermodel = search.hypermodel
    settings["sweep.code_dir"] = module_root(
        hypermodel.build if isinstance(hypermodel, DefaultHyperModel) else type(hypermodel)
    )
    if strategy == "hyperband" and max_epochs:
        settings["tuner.max_epochs"] = max_epochs
    if strategy == "bayesian" and search.given_tuner is None:
        settings["tuner.max_trials"] = search.max_trials or 10
    return [f"{key}={_override_value(value)}" for key, value in settings.items() if value is not None]


def _objective_settings(objective: Any, direction: Optional[str]) -> dict[str, Any]:
    """``objective="val_loss"`` as sweep.objective; a list (Keras Tuner's way of giving several) as
    sweep.objectives, each "name" or "name:min|max" (a ``kt.Objective`` too)."""
    if isinstance(objective, (list, tuple)):
        entries = [f"{o.name}:{o.direction}" if hasattr(o, "direction") else str(o) for o in objective]
        return {"sweep.objectives": entries}
    if hasattr(objective, "direction"):  # a kt.Objective
        return {"sweep.objective": objective.name, "sweep.direction": objective.direction}
    return {"sweep.objective": objective or "val_loss", "sweep.direction": direction}


def _config_of(args: list[str], overrides: Sequence[str]) -> tuple[Any, Any]:
    """The composed config too: what ran is recorded from it, resolved, once the objects are in."""
    from ktsweep.conf.compose import compose, validate

    cfg = compose([*args, *overrides])
    return cfg, validate(cfg)


def _dataset_of(x: Any, y: Any, validation_data: Any, test_data: Any, *, validation_split: float, name: str,
                seed: int) -> Any:
    """The arrays checked before any is split, so a wrong argument fails in ``tuner.search``'s words."""
    from ktsweep.data.loaders import dataset_from_arrays

    splits = _splits(x, y, validation_data, test_data)
    return dataset_from_arrays(splits, name=name, source="ktsweep.sweep(x, y)", val_fraction=validation_split,
                               test_fraction=0.0, seed=seed)


def _inputs_of(target: Any, search: _Search, dataset: Any, callbacks: Optional[list], *, cfg: Any, config: Any,
               data_name: str, loader: Any = None) -> tuple[Any, dict[str, Any]]:
    """The objects themselves go to the engine in ``SweepInputs``; the config (and the plain record of it,
    returned beside) only names what ran."""
    from omegaconf import OmegaConf

    from ktsweep.search.inputs import SweepInputs, describe

    described = target if search.given_tuner is None else search.hypermodel
    config.hypermodel = SimpleNamespace(_target_=describe(described))
    config.data = SimpleNamespace(_target_=describe(loader) if loader is not None else "ktsweep.sweep", name=data_name,
                                  load_in="workers" if loader is not None else "driver")
    if search.oracle is not None:
        config.tuner._target_ = f"{type(search.oracle).__module__}.{type(search.oracle).__name__}"
    record = OmegaConf.to_container(cfg, resolve=True)
    record["hypermodel"], record["data"] = vars(config.hypermodel), {**vars(config.data), "sizes": dataset.sizes()}
    inputs = SweepInputs(dataset=dataset, hypermodel=search.hypermodel, oracle=search.oracle,
                         keras_callbacks=list(callbacks or []))
    return inputs, record


def _run(config: Any, record: dict[str, Any], args: list[str], inputs: Any, *, oracle: Any) -> Any:
    """The tuner's oracle is kept quiet during the run and given its verbosity back however the run ends."""
    from omegaconf import OmegaConf

    from ktsweep.search.flow import run_sweep

    verbose = getattr(oracle, "verbose", None)
    if oracle is not None:
        oracle.verbose = 0  # ktsweep's progress lines replace the oracle's own printout
    try:
        return run_sweep(config, resolved_yaml=OmegaConf.to_yaml(OmegaConf.create(record)), overrides=args,
                         inputs=inputs, reopen_options=_reopen_options(config, oracle))
    finally:
        if oracle is not None:
            oracle.verbose = verbose


def _reopen_options(config: Any, oracle: Any) -> dict[str, Any]:
    """A tuner decides with its own ``overwrite``, as in Keras Tuner: a project it reloaded must hold the same
    search (checked here), and a project it started afresh starts a named sweep afresh too."""
    from ktsweep.conf.identity import as_plain, differences, summary
    from ktsweep.core.sweep_folder import load_search, save_search

    if oracle is None:
        return {"ways_on": "pass another name= (or none, for a fresh one), or overrides=['sweep.overwrite=true'] "
                           "(sets the old sweep aside; nothing recorded is deleted)"}
    project = oracle._project_dir
    reloaded = bool(oracle.trials)  # the tuner was made with overwrite=False over an existing project
    record = load_search(project)
    if reloaded and record is not None:
        changed = differences(record["config"], as_plain(config))
        if changed:
            raise UsageError(
                f"the tuner's project {project} holds trials of another search ({summary(changed)}); create the "
                "tuner with overwrite=True (Keras Tuner then starts afresh), or give it another project_name"
            )
    save_search(project, {"config": as_plain(config), "tracking_uri": config.tracking.uri,
                          "experiment": config.tracking.experiment})
    return {"overwrite": not reloaded,
            "ways_on": "pass another name=, or create the tuner with overwrite=True (the sweep then starts afresh)"}


def _finished(outcome: Any, root: str, given_tuner: Any, oracle: Any) -> SweepResult:
    """A given tuner's trial folders are filled first, so its ``get_best_models`` loads the sweep's trials."""
    sweep_dir = os.path.join(os.path.abspath(root), "sweeps", outcome.name)
    if given_tuner is not None:
        _fill_tuner_trials(given_tuner, sweep_dir)
    return _result(outcome, sweep_dir, oracle)


def _override_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
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

    from ktsweep.execution.trainable import MODEL_FILE
    from ktsweep.search.searcher import read_checkpoint_index

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
    from ktsweep.registry.publish import tuned_values

    best: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    if outcome.best_trial_id is not None:
        trial = oracle.trials[outcome.best_trial_id]
        best = tuned_values(trial)
        metrics = {key: float(trial.metrics.get_best_value(key)) for key in trial.metrics.metrics}
    model_path = os.path.join(sweep_dir, "final", MODEL_FILE)
    return SweepResult(
        name=outcome.name, status=outcome.status, best_hyperparameters=best, best_metrics=metrics,
        best_trial_id=outcome.best_trial_id, objective=outcome.objective, best_score=outcome.best_score,
        completed=outcome.completed, failed=outcome.failed, run_id=outcome.parent_run_id,
        tracking_uri=outcome.tracking_uri, registered_model=outcome.registered_model,
        model_version=outcome.model_version, test_metrics=dict(outcome.test_metrics),
        # none when no trial is best (none completed, or none meets sweep.select), even if an earlier run published
        model_path=model_path if outcome.best_trial_id is not None and os.path.exists(model_path) else None,
        promotion=outcome.promotion or None,
        pareto_front=[{**entry, "hyperparameters": tuned_values(oracle.trials[entry["trial_id"]])}
                      for entry in outcome.pareto_front],
    )
