"""The bundle: what ``ktsweep pull`` fetches and verifies, logged beside the MLflow model.

The ``bundle/`` artifacts of the sweep's parent run are ``model.keras``, ``card.json``
(hyperparameters, metrics, data schema, lineage, versions) and ``example.npz`` (inputs with
the predictions recorded at logging time, so a pulled copy can prove it behaves the same).
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from typing import Any, Optional

import numpy as np

BUNDLE = "bundle"
CARD_FILE = "card.json"
EXAMPLE_FILE = "example.npz"


DISTRIBUTIONS = ("ktsweep", "keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "torch", "keras-tuner", "mlflow",
                 "ray", "numpy")
# What a served model needs, by the backend it is logged for.
SERVING = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}


def versions() -> dict[str, str]:
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def pip_requirements(backend: str) -> list[str]:
    """Pinned requirements of a logged model on its backend; given explicitly (inference costs ~6 s a model)."""
    pins = versions()
    return [f"{dist}=={pins[dist]}" for dist in (*SERVING[backend], "keras", "numpy") if dist in pins]


def named_arrays(value: Any) -> dict[str, np.ndarray]:
    """A model's input or output as named arrays: ``{"": a}`` for one array, else by name or position."""
    if isinstance(value, dict):
        return {str(key): np.asarray(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return {str(index): np.asarray(item) for index, item in enumerate(value)}
    return {"": np.asarray(value)}


def save_example(path: str, inputs: Any, outputs: Any) -> None:
    """Inputs and the predictions made on them, for single- and multi-input/output models alike."""
    arrays = {f"x/{key}": value for key, value in named_arrays(inputs).items()}
    arrays.update({f"y/{key}": value for key, value in named_arrays(outputs).items()})
    np.savez(path, **arrays)


def load_example(path: str) -> tuple[Any, dict[str, np.ndarray]]:
    """(inputs as the model takes them, predictions as named arrays) from ``save_example``."""
    with np.load(path) as data:
        inputs = {key[2:]: data[key] for key in data.files if key.startswith("x/")}
        outputs = {key[2:]: data[key] for key in data.files if key.startswith("y/")}
    return (inputs[""] if list(inputs) == [""] else inputs), outputs


def write_bundle(directory: str, *, model: Any, checkpoint_dir: str, example: Any, card: dict[str, Any]) -> None:
    import shutil

    from ktsweep.execution.trainable import MODEL_FILE

    os.makedirs(directory, exist_ok=True)
    shutil.copy(os.path.join(checkpoint_dir, MODEL_FILE), os.path.join(directory, MODEL_FILE))
    save_example(os.path.join(directory, EXAMPLE_FILE), example, model.predict(example, verbose=0))
    with open(os.path.join(directory, CARD_FILE), "w") as fh:
        json.dump(card, fh, indent=2, default=str)


def log_model(model_file: str, *, example: Any, card: dict[str, Any]) -> Any:
    """Log the bundle and the MLflow model under the active run; MLflow's ``ModelInfo`` (its uri and id).

    On TensorFlow, MLflow's ``tensorflow`` flavour (the model as TF Serving also takes it); on JAX and
    PyTorch, its Keras 3 flavour, which loads the ``.keras`` file on the serving process's backend
    and does not import TensorFlow here."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    model = keras.models.load_model(model_file, safe_mode=True)
    with tempfile.TemporaryDirectory(prefix="ktsweep-bundle-") as directory:
        write_bundle(directory, model=model, checkpoint_dir=os.path.dirname(model_file), example=example, card=card)
        mlflow.log_artifacts(directory, BUNDLE)
    backend = keras.config.backend()
    options = dict(
        name="model",
        signature=infer_signature(example, model.predict(example, verbose=0)),
        pip_requirements=pip_requirements(backend),
    )
    if backend == "tensorflow":
        return mlflow.tensorflow.log_model(model, custom_objects=custom_objects(model), **options)
    import mlflow.keras

    return mlflow.keras.log_model(model, **options)


def custom_objects(model: Any) -> Optional[dict[str, Any]]:
    """Registered Keras classes the model uses, so MLflow's loader can rebuild a subclassed model."""
    import keras

    try:
        config = json.dumps(keras.saving.serialize_keras_object(model), default=str)
    except Exception:  # a model that cannot describe itself is logged without them
        return None
    used = {name: obj for name, obj in keras.saving.get_custom_objects().items() if f'"{name}"' in config}
    return used or None
