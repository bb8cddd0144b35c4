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
from ktsweep.execution.trainable import MODEL_FILE


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
    batch_size: Optional[int], cpus: Optional[float], gpus: float = 0.0, cache_root: Optional[str] = None,
) -> FinalResult:
    """One final model, in a worker (``cpus`` given: the backend limited as a trial's) or in the driver."""
    import keras
    import keras_tuner as kt
    import numpy as np

    from ktsweep.execution import worker_backend
    from ktsweep.execution.trainable import fresh_session, load_model_from_checkpoint
    from ktsweep.hypermodels.base import model_inputs, model_targets

    if cpus is not None:
        worker_backend.prepare(cpus=cpus, gpus=gpus, cache_root=cache_root)
        fresh_session()
    if checkpoint is None:  # retrain from scratch on everything but the test set
        hp = kt.HyperParameters.from_config(hp_config)
        model = hypermodel.build(hp)
        x = np.concatenate([dataset.x_train, dataset.x_val])
        y = np.concatenate([dataset.y_train, dataset.y_val])
        fit_kwargs = {} if batch_size is None else {"batch_size": batch_size}
        hypermodel.fit(
            hp, model, model_inputs(hypermodel, x), model_targets(hypermodel, y), epochs=epochs, verbose=0, **fit_kwargs
        )
    else:
        model = load_model_from_checkpoint(checkpoint)
    metrics: dict[str, float] = {}
    if len(dataset.x_test):
        values = model.evaluate(
            model_inputs(hypermodel, dataset.x_test), model_targets(hypermodel, dataset.y_test),
            batch_size=batch_size, verbose=0, return_dict=True,
        )
        metrics = {f"test_{key}": float(value) for key, value in values.items()}
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
    batch_size: Optional[int], cpus: float, out_dir: str, code_folder: str, gpus: float = 0.0,
    cache_root: Optional[str] = None,
) -> tuple[str, FinalResult]:
    """Evaluate (and, if asked, first retrain) the best trial's model, or the ensemble of the
    ``trials`` given (best first); write it to ``out_dir``."""
    from ktsweep.execution.trainable import checkpoint_exists

    lost = [c for c in checkpoints if not retrain and c and not checkpoint_exists(c)]
    redo = [retrain or not checkpoint or checkpoint in lost for checkpoint in checkpoints]
    members = [_member_kwargs(dataset, hypermodel, trial, checkpoint, again, batch_size)
               for trial, checkpoint, again in zip(trials, checkpoints, redo)]
    # Asked-for retraining runs in Ray tasks; a model whose checkpoint is gone is retrained here, in the
    # driver, where the others are loaded: the CLI may already be shutting Ray down (``shut_down_early``).
    results = _retrained(members, cpus=cpus, gpus=gpus, cache_root=cache_root, code_folder=code_folder) if retrain else \
        [_final_task(cpus=None, **kwargs) for kwargs in members]
    result = results[0] if len(results) == 1 else _ensemble(results, trials, dataset, hypermodel, batch_size)
    result.lost_checkpoints = lost
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MODEL_FILE), "wb") as fh:
        fh.write(result.model_bytes)
    return out_dir, result


def _retrained(
    members: list[dict[str, Any]], *, cpus: float, gpus: float, cache_root: Optional[str], code_folder: str,
) -> list[FinalResult]:
    """Retrain in workers, at once, with a trial's resources: the user's HyperModel travels with its code
    folder; the data is put once."""
    if not members:
        return []
    import ray

    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_final_task)
    shared = {"hypermodel": WithCodeDir(members[0]["hypermodel"], code_folder), "dataset": ray.put(members[0]["dataset"])}
    return ray.get([task.remote(cpus=cpus, gpus=gpus, cache_root=cache_root, **{**kwargs, **shared})
                    for kwargs in members])


def _member_kwargs(
    dataset: Any, hypermodel: Any, trial: Any, checkpoint: Optional[str], retrain: bool, batch_size: Optional[int]
) -> dict[str, Any]:
    values = trial.hyperparameters.values
    epochs = int(trial.best_step or 0) + 1  # best_step is the 0-based best epoch (absolute for Hyperband)
    return dict(
        dataset=dataset,
        hypermodel=hypermodel,
        hp_config=trial.hyperparameters.get_config(),
        checkpoint=None if retrain else checkpoint,
        epochs=epochs if retrain else int(values.get("tuner/epochs", epochs)),
        batch_size=batch_size,
    )


def _ensemble(results: list[FinalResult], trials: list[Any], dataset: Any, hypermodel: Any, batch_size: Optional[int]) -> FinalResult:
    """One functional model averaging the members' outputs (output by output), compiled as the best
    member was, evaluated once on the test split."""
    import keras

    from ktsweep.hypermodels.base import model_inputs, model_targets

    with tempfile.TemporaryDirectory() as directory:
        models = []
        for index, result in enumerate(results):
            path = os.path.join(directory, f"member{index}.keras")
            with open(path, "wb") as fh:
                fh.write(result.model_bytes)
            model = keras.models.load_model(path, safe_mode=True)
            model.name = f"member_{index}"  # members of one architecture share a name, which a functional model refuses
            models.append(model)
        sample = model_inputs(hypermodel, dataset.x_train[:1])
        inputs = _inputs_like(sample)
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
        metrics: dict[str, float] = {}
        if len(dataset.x_test):
            values = model.evaluate(model_inputs(hypermodel, dataset.x_test), model_targets(hypermodel, dataset.y_test),
                                    batch_size=batch_size, verbose=0, return_dict=True)
            metrics = {f"test_{key}": float(value) for key, value in values.items()}
        path = os.path.join(directory, MODEL_FILE)
        model.save(path)
        with open(path, "rb") as fh:
            data = fh.read()
    members = [{"trial_id": trial.trial_id, "epochs": result.epochs, "test_metrics": result.test_metrics}
               for trial, result in zip(trials, results)]
    return FinalResult(data, metrics, results[0].retrained, results[0].epochs, members)


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
