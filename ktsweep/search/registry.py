"""Publish the best model: log it (MLflow model + a verifiable bundle), register it, promote it.

The bundle (``bundle/`` artifacts of the sweep's parent run) is what ``ktsweep
pull`` fetches: ``model.keras``, ``card.json`` (hyperparameters, metrics, data
schema, lineage, versions) and ``example.npz`` (inputs with the predictions
recorded at logging time, so a pulled copy can prove it behaves the same).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ktsweep.search.champion import mark_champion
from ktsweep.search.trainable import MODEL_FILE

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
BUNDLE = "bundle"
CARD_FILE = "card.json"
EXAMPLE_FILE = "example.npz"
PROMOTE_POLICIES = ("always", "if_better", "never")


@dataclass(frozen=True)
class Publication:
    """What publishing decided: the registered version and whether it became the champion."""

    name: Optional[str]
    version: Optional[str]
    promoted: bool
    reason: str


def versions() -> dict[str, str]:
    found = {}
    for dist in ("ktsweep", "keras", "tensorflow-cpu", "tensorflow", "keras-tuner", "mlflow", "ray", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model; given explicitly (inference costs ~6 s a model)."""
    pins = versions()
    return [f"{dist}=={pins[dist]}" for dist in ("tensorflow-cpu", "tensorflow", "keras", "numpy") if dist in pins]


def champion_decision(
    policy: str, *, candidate: float, current: Optional[dict[str, str]], objective: str, direction: str, data: str
) -> tuple[bool, str]:
    """Should the candidate take the ``champion`` alias? (``current``: the champion's tags, if any.)"""
    if policy == "never":
        return False, "promotion disabled (registry promote=never)"
    if policy == "always" or current is None:
        return True, "no champion yet" if current is None else "promote=always"
    if current.get("ktsweep.objective") != objective or current.get("ktsweep.data") != data:
        return False, (
            f"champion was judged on {current.get('ktsweep.objective')} / {current.get('ktsweep.data')}, "
            f"not {objective} / {data}: not comparable, kept"
        )
    best = float(current.get("ktsweep.score", "nan"))
    better = math.isnan(best) or (candidate > best if direction == "max" else candidate < best)
    verdict = "better" if better else "not better"
    return better, f"candidate {objective}={candidate:.6g} is {verdict} than champion {best:.6g}"


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

    os.makedirs(directory, exist_ok=True)
    shutil.copy(os.path.join(checkpoint_dir, MODEL_FILE), os.path.join(directory, MODEL_FILE))
    save_example(os.path.join(directory, EXAMPLE_FILE), example, model.predict(example, verbose=0))
    with open(os.path.join(directory, CARD_FILE), "w") as fh:
        json.dump(card, fh, indent=2, default=str)


def publish_best(
    client: "MlflowClient",
    *,
    checkpoint_dir: str,
    example: Any,
    card: dict[str, Any],
    registered_model: Optional[str],
    promote: str,
) -> Publication:
    """Log the model under the active (parent) run, register it, and apply the promotion policy."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    model = keras.models.load_model(os.path.join(checkpoint_dir, MODEL_FILE), safe_mode=True)
    with tempfile.TemporaryDirectory(prefix="ktsweep-bundle-") as directory:
        write_bundle(directory, model=model, checkpoint_dir=checkpoint_dir, example=example, card=card)
        mlflow.log_artifacts(directory, BUNDLE)
    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict(example, verbose=0)),
        pip_requirements=pip_requirements(),
        custom_objects=custom_objects(model),
        registered_model_name=registered_model or None,
    )
    if not registered_model:
        return Publication(None, None, False, "not registered (tracking.register=false)")
    version = str(info.registered_model_version)
    lineage = card["lineage"]
    tags = {
        "ktsweep.sweep": lineage["sweep"],
        "ktsweep.trial_id": lineage["trial_id"],
        "ktsweep.parent_run_id": lineage["parent_run_id"],
        "ktsweep.objective": card["objective"]["name"],
        "ktsweep.direction": card["objective"]["direction"],
        "ktsweep.score": repr(card["objective"]["value"]),
        "ktsweep.data": card["data"]["name"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    current = champion_tags(client, registered_model)
    promoted, reason = champion_decision(
        promote,
        candidate=card["objective"]["value"],
        current=current,
        objective=tags["ktsweep.objective"],
        direction=tags["ktsweep.direction"],
        data=tags["ktsweep.data"],
    )
    if promoted:
        client.set_registered_model_alias(registered_model, CHAMPION, version)
        mark_champion(client, registered_model, version)
    mlflow.set_tags({"ktsweep.promotion": "promoted" if promoted else "kept", "ktsweep.promotion_reason": reason})
    scores = {"candidate_score": card["objective"]["value"]}
    if current and current.get("ktsweep.score"):
        scores["champion_score_before"] = float(current["ktsweep.score"])
    mlflow.log_metrics(scores)
    return Publication(registered_model, version, promoted, reason)


def custom_objects(model: Any) -> Optional[dict[str, Any]]:
    """Registered Keras classes the model uses, so MLflow's loader can rebuild a subclassed model."""
    import keras

    try:
        config = json.dumps(keras.saving.serialize_keras_object(model), default=str)
    except Exception:  # a model that cannot describe itself is logged without them
        return None
    used = {name: obj for name, obj in keras.saving.get_custom_objects().items() if f'"{name}"' in config}
    return used or None


def champion_tags(client: "MlflowClient", name: str) -> Optional[dict[str, str]]:
    """Tags of the current champion version, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_model_version_by_alias(name, CHAMPION).tags)
    except MlflowException:
        return None
