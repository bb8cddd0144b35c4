"""Log the best trial's model to MLflow and register it with the ``champion`` alias."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Optional

import numpy as np

from search.trainable import MODEL_FILE

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    alias: str


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model; given explicitly (inference costs ~6 s a model)."""
    pins = []
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_best_model(
    client: "MlflowClient",
    *,
    checkpoint_dir: str,
    example: np.ndarray,
    registered_model: Optional[str],
    tags: dict[str, str],
) -> Optional[RegisteredModel]:
    """Log the model under the active (parent) run; register it and point ``champion`` at it."""
    import keras
    import mlflow

    from mlflow.models import infer_signature

    model = keras.models.load_model(os.path.join(checkpoint_dir, MODEL_FILE), safe_mode=True)
    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict(example, verbose=0)),
        pip_requirements=pip_requirements(),
        registered_model_name=registered_model or None,
    )
    if not registered_model:
        return None
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    client.set_registered_model_alias(registered_model, CHAMPION, version)
    return RegisteredModel(registered_model, version, CHAMPION)
