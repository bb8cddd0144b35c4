"""After the search: optionally retrain the best hyperparameters on train + validation, then
evaluate once on the held-out test set.

Retraining runs as Ray tasks (the driver does not train; an ensemble's members retrain in
parallel); evaluating the best trial's saved model is cheap and runs in the driver, which has
Keras loaded already, so it does not pay for a fresh worker process.

With ``sweep.final.ensemble=N`` the final model is one Keras model that averages the outputs of
the best N trials' models: averaging a few good networks cancels part of each one's
seed-and-epoch luck (on the housing preset it is worth about 0.01 of test RMSE, more than
any hyperparameter found; bench/RESULTS.md section 6). It is a plain functional model
(``keras.layers.Average`` over the members), so it loads, serves and registers like any other.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

from ktsweep.core.user_code import WithCodeDir
from ktsweep.execution.data_probe import TASK_ENV
from ktsweep.execution.trainable import MODEL_FILE, fit_inputs


@dataclass(frozen=True)
class FitSettings:
    """How the final model is fed, as the trials were: batch size for arrays, steps for endless pipelines."""

    batch_size: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None


def test_metrics(model: Any, feeds: Any, hypermodel: Any, settings: FitSettings) -> dict[str, float]:
    """One evaluation on the test split (none without one), as ``test_<metric>``."""
    if feeds.test is None:
        return {}
    options = {} if feeds.test.pipeline else {"batch_size": settings.batch_size}
    if settings.validation_steps is not None and feeds.test.pipeline:
        options["steps"] = settings.validation_steps
    values = model.evaluate(*fit_inputs(feeds.test, hypermodel), verbose=0, return_dict=True, **options)
    return {f"test_{key}": float(value) for key, value in values.items()}


@dataclass
class FinalResult:
    model_bytes: bytes  # the .keras file: works when the task ran on another node
    test_metrics: dict[str, float]
    retrained: bool
    epochs: int
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's trials: id, epochs, own test metrics
    lost_checkpoints: list[str] = field(default_factory=list)  # saved models that were gone: retrained instead


def _final_task(
    *, dataset: Any, hypermodel: Any, hp_config: dict, checkpoint: Optional[str], epochs: int,
    settings: FitSettings, cpus: Optional[float], gpus: float = 0.0, cache_root: Optional[str] = None,
) -> FinalResult:
    """One final model, in a worker (``cpus`` given: the backend limited as a trial's) or in the driver."""
    import keras
    import keras_tuner as kt

    from ktsweep.execution import worker_backend
    from ktsweep.execution.trainable import fit_options, fresh_session, load_model_from_checkpoint

    if cpus is not None:
        worker_backend.prepare(cpus=cpus, gpus=gpus, cache_root=cache_root)
        fresh_session()
    if checkpoint is None:  # retrain from scratch on everything but the test set
        hp = kt.HyperParameters.from_config(hp_config)
        model = hypermodel.build(hp)
        both = dataset.feeds().train_and_val()  # data the workers load is loaded here, in a worker
        hypermodel.fit(hp, model, *fit_inputs(both, hypermodel), epochs=epochs, verbose=0,
                       **fit_options(settings, both))
    else:
        model = load_model_from_checkpoint(checkpoint)
    metrics = test_metrics(model, dataset.feeds(), hypermodel, settings) if dataset.has_test else {}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, MODEL_FILE)
        model.save(path)
        with open(path, "rb") as fh:
            data = fh.read()
    if cpus is not None:
        keras.backend.clear_session()
    return FinalResult(data, metrics, checkpoint is None, epochs)


def finalize(
    *, dataset: Any, hypermodel: Any, trials: list[Any], checkpoints: list[Optional[str]], retrain: bool,
    settings: FitSettings, cpus: float, out_dir: str, code_folder: str, gpus: float = 0.0,
    cache_root: Optional[str] = None,
) -> tuple[str, FinalResult]:
    """Evaluate (and, if asked, first retrain) the best trial's model, or the ensemble of the
    ``trials`` given (best first); write it to ``out_dir``."""
    from ktsweep.execution.trainable import checkpoint_exists

    lost = [c for c in checkpoints if not retrain and c and not checkpoint_exists(c)]
    redo = [retrain or not checkpoint or checkpoint in lost for checkpoint in checkpoints]
    members = [_member_kwargs(dataset, hypermodel, trial, checkpoint, again, settings)
               for trial, checkpoint, again in zip(trials, checkpoints, redo)]
    # Asked-for retraining runs in Ray tasks; a model whose checkpoint is gone is retrained here, in the
    # driver, where the others are loaded: the CLI may already be shutting Ray down (``shut_down_early``).
    # Data the workers load is never loaded in the driver: a test split of it is evaluated in a Ray task.
    in_workers = retrain or (dataset.in_workers and (dataset.has_test or any(redo)))
    results = _in_workers(members, cpus=cpus, gpus=gpus, cache_root=cache_root, code_folder=code_folder) \
        if in_workers else [_final_task(cpus=None, **kwargs) for kwargs in members]
    result = results[0] if len(results) == 1 else _ensemble(results, trials, dataset, hypermodel, settings,
                                                              code_folder=code_folder, cpus=cpus)
    result.lost_checkpoints = lost
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MODEL_FILE), "wb") as fh:
        fh.write(result.model_bytes)
    return out_dir, result


def _in_workers(
    members: list[dict[str, Any]], *, cpus: float, gpus: float, cache_root: Optional[str], code_folder: str,
) -> list[FinalResult]:
    """Retrain (or evaluate) in workers, at once, with a trial's resources: the user's HyperModel travels
    with its code folder; the data is put once."""
    if not members:
        return []
    import ray

    dataset = members[0]["dataset"]
    options = {"runtime_env": TASK_ENV} if dataset.in_workers else {}  # the probe's worker: the data is loaded there
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, **options)(_final_task)
    shared = {"hypermodel": WithCodeDir(members[0]["hypermodel"], code_folder), "dataset": ray.put(dataset)}
    return ray.get([task.remote(cpus=cpus, gpus=gpus, cache_root=cache_root, **{**kwargs, **shared})
                    for kwargs in members])


def _member_kwargs(
    dataset: Any, hypermodel: Any, trial: Any, checkpoint: Optional[str], retrain: bool, settings: FitSettings
) -> dict[str, Any]:
    values = trial.hyperparameters.values
    epochs = int(trial.best_step or 0) + 1  # best_step is the 0-based best epoch (absolute for Hyperband)
    return dict(
        dataset=dataset,
        hypermodel=hypermodel,
        hp_config=trial.hyperparameters.get_config(),
        checkpoint=None if retrain else checkpoint,
        epochs=epochs if retrain else int(values.get("tuner/epochs", epochs)),
        settings=settings,
    )


def _ensemble(
    results: list[FinalResult], trials: list[Any], dataset: Any, hypermodel: Any, settings: FitSettings, *,
    code_folder: str, cpus: float,
) -> FinalResult:
    """One functional model averaging the members' outputs (output by output), compiled as the best
    member was, evaluated once on the test split (in a worker when the workers load the data)."""
    import keras

    with tempfile.TemporaryDirectory() as directory:
        models = []
        for index, result in enumerate(results):
            path = os.path.join(directory, f"member{index}.keras")
            with open(path, "wb") as fh:
                fh.write(result.model_bytes)
            model = keras.models.load_model(path, safe_mode=True)
            model.name = f"member_{index}"  # members of one architecture share a name, which a functional model refuses
            models.append(model)
        inputs = _inputs_like(dataset.sample(hypermodel, 1)[0])
        outputs = [model(inputs) for model in models]
        # the outputs keep the best member's names, which its compiled losses and metrics may be keyed by
        names = list(getattr(models[0], "output_names", None) or [])
        if isinstance(outputs[0], dict):
            averaged: Any = {name: keras.layers.Average(name=name)([out[name] for out in outputs]) for name in outputs[0]}
        elif isinstance(outputs[0], (list, tuple)):
            averaged = [keras.layers.Average(name=names[i] if len(names) == len(outputs[0]) else None)([out[i] for out in outputs])
                        for i in range(len(outputs[0]))]
        else:
            averaged = keras.layers.Average(name=names[0] if len(names) == 1 else None)(outputs)
        model = keras.Model(inputs, averaged, name=f"ensemble_of_{len(models)}")
        model.compile_from_config(models[0].get_compile_config())
        path = os.path.join(directory, MODEL_FILE)
        model.save(path)
        with open(path, "rb") as fh:
            data = fh.read()
        local = dataset.has_test and not dataset.in_workers
        metrics = test_metrics(model, dataset.feeds(), hypermodel, settings) if local else {}
    if dataset.in_workers and dataset.has_test:
        import ray

        task = ray.remote(num_cpus=cpus, runtime_env=TASK_ENV)(_evaluate_saved)
        metrics = ray.get(task.remote(data, dataset=dataset, hypermodel=WithCodeDir(hypermodel, code_folder),
                                      settings=settings))
    members = [{"trial_id": trial.trial_id, "epochs": result.epochs, "test_metrics": result.test_metrics}
               for trial, result in zip(trials, results)]
    return FinalResult(data, metrics, results[0].retrained, results[0].epochs, members)


def _evaluate_saved(model_bytes: bytes, *, dataset: Any, hypermodel: Any, settings: FitSettings) -> dict[str, float]:
    """A saved model's test metrics, in a worker that loads the data."""
    import keras

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, MODEL_FILE)
        with open(path, "wb") as fh:
            fh.write(model_bytes)
        return test_metrics(keras.models.load_model(path, safe_mode=True), dataset.feeds(), hypermodel, settings)


def _inputs_like(sample: Any) -> Any:
    """``keras.Input`` s shaped as the HyperModel feeds its model: one array, a list, or a dict by name."""
    import keras

    def one(array: Any, name: Optional[str] = None) -> Any:
        return keras.Input(shape=array.shape[1:], dtype=str(array.dtype), name=name)

    if isinstance(sample, dict):
        return {name: one(array, name) for name, array in sample.items()}
    if isinstance(sample, (list, tuple)):
        return [one(array) for array in sample]
    return one(sample)
