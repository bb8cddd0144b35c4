"""After the search: optionally retrain the best hyperparameters on train + validation, then
evaluate once on the held-out test set.

Retraining runs as a Ray task (the driver does not train); evaluating the best
trial's saved model is cheap and runs in the driver, which has Keras loaded
already, so it does not pay for a fresh worker process.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from ktsweep.search.trainable import MODEL_FILE
from ktsweep.search.user_code import WithCodeDir


@dataclass
class FinalResult:
    model_bytes: bytes  # the .keras file: works when the task ran on another node
    test_metrics: dict[str, float]
    retrained: bool
    epochs: int


def _final_task(
    *, dataset: Any, hypermodel: Any, hp_config: dict, checkpoint: Optional[str], epochs: int,
    batch_size: Optional[int], cpus: Optional[float],
) -> FinalResult:
    import keras
    import keras_tuner as kt
    import numpy as np

    from ktsweep.hypermodels.base import model_inputs, model_targets
    from ktsweep.search.trainable import fresh_session, limit_threads, load_model_from_checkpoint

    if cpus is not None:
        limit_threads(cpus)
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
    *, dataset: Any, hypermodel: Any, trial: Any, checkpoint: str, retrain: bool, batch_size: Optional[int], cpus: float,
    out_dir: str, code_folder: str,
) -> tuple[str, FinalResult]:
    """Evaluate (and, if asked, first retrain) the best trial's model; write it to ``out_dir``."""
    import ray

    values = trial.hyperparameters.values
    epochs = int(trial.best_step or 0) + 1  # best_step is the 0-based best epoch (absolute for Hyperband)
    kwargs = dict(
        dataset=dataset,
        hypermodel=hypermodel,
        hp_config=trial.hyperparameters.get_config(),
        checkpoint=None if retrain else checkpoint,
        epochs=epochs if retrain else int(values.get("tuner/epochs", epochs)),
        batch_size=batch_size,
    )
    if retrain:  # in a worker: the user's HyperModel travels with its code folder
        kwargs["hypermodel"] = WithCodeDir(hypermodel, code_folder)
        result: FinalResult = ray.get(ray.remote(num_cpus=cpus)(_final_task).remote(cpus=cpus, **kwargs))
    else:
        result = _final_task(cpus=None, **kwargs)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MODEL_FILE), "wb") as fh:
        fh.write(result.model_bytes)
    return out_dir, result
