"""``ktsweep pull``: fetch a published model, verify it, write a deployable folder.

A reference is a sweep name (its best model), ``NAME@ALIAS`` or ``NAME/VERSION``
from the registry. Nothing is reported as pulled until the written
``model.keras`` has been loaded with ``safe_mode=True`` and reproduced the
predictions recorded when the model was logged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import UsageError
from search.registry import BUNDLE, CARD_FILE, EXAMPLE_FILE
from search.trainable import MODEL_FILE

if TYPE_CHECKING:
    from mlflow import MlflowClient

FORMATS = ("keras", "saved_model")
TOLERANCE = 1e-5


class VerificationError(UsageError):
    """The pulled model does not behave as the logged one did."""


@dataclass(frozen=True)
class Pulled:
    out: str
    source: str  # e.g. "ktsweep-digits v3" or "sweep digits-random-..."
    card: dict[str, Any]
    checked: int  # examples reproduced

    def summary(self) -> str:
        objective = self.card["objective"]
        return (
            f"pulled {self.source} (sweep {self.card['lineage']['sweep']}, trial {self.card['lineage']['trial_id']}, "
            f"{objective['name']}={objective['value']:.4f}) -> {self.out} (verified on {self.checked} examples)"
        )


def resolve(client: "MlflowClient", experiment_id: str, ref: str) -> tuple[str, str]:
    """The run holding the bundle for ``ref``, and a label for it."""
    from mlflow.exceptions import MlflowException

    from dashboards.leaderboard import sweep_run

    if "@" in ref or "/" in ref:
        name, sep, which = ref.partition("@") if "@" in ref else ref.partition("/")
        try:
            version = (
                client.get_model_version_by_alias(name, which) if sep == "@" else client.get_model_version(name, which)
            )
        except MlflowException as exc:
            raise UsageError(
                f"no registered model version {ref!r} ({exc.error_code}); "
                "`ktsweep list` shows sweeps, the MLflow UI's Models tab shows names, versions and aliases"
            ) from exc
        return version.run_id, f"{name} v{version.version}"
    run = sweep_run(client, experiment_id, ref)
    if "ktsweep.best_trial_id" not in run.data.tags:
        raise UsageError(f"sweep {ref!r} has no finished trial, so no model to pull; run or resume it first")
    return run.info.run_id, f"sweep {ref}"


def pull(client: "MlflowClient", experiment_id: str, ref: str, *, out: str, fmt: str = "keras", force: bool = False) -> Pulled:
    import keras

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    out = os.path.abspath(out)
    if os.path.exists(out) and os.listdir(out) and not force:
        raise UsageError(f"{out} exists and is not empty; choose another --out or pass --force to replace it")
    run_id, label = resolve(client, experiment_id, ref)
    staging = tempfile.mkdtemp(prefix="ktsweep-pull-")
    try:
        try:
            bundle = client.download_artifacts(run_id, BUNDLE, staging)
        except Exception as exc:  # missing artifact or unreachable store
            raise UsageError(f"cannot fetch the model bundle of {label} ({type(exc).__name__}: {exc})") from exc
        with open(os.path.join(bundle, CARD_FILE)) as fh:
            card = json.load(fh)
        example = np.load(os.path.join(bundle, EXAMPLE_FILE))
        model = keras.models.load_model(os.path.join(bundle, MODEL_FILE), safe_mode=True)
        check(label, example["y"], model.predict(example["x"], verbose=0))
        if fmt == "saved_model":
            export = os.path.join(bundle, "saved_model")
            model.export(export, format="tf_saved_model", verbose=False)
            check(label + " (SavedModel)", example["y"], serve_saved_model(export, example["x"]))
        card["pulled_from"] = {"ref": ref, "source": label, "run_id": run_id}
        with open(os.path.join(bundle, "model.json"), "w") as fh:
            json.dump(card, fh, indent=2)
        os.remove(os.path.join(bundle, CARD_FILE))
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.move(bundle, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pulled(out=out, source=label, card=card, checked=len(example["x"]))


def serve_saved_model(path: str, x: np.ndarray) -> np.ndarray:
    """Predict through the SavedModel's serving signature, as TF Serving would."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    return np.asarray(loaded.serve(tf.constant(x)))


def check(label: str, expected: np.ndarray, got: Any) -> None:
    got = np.asarray(got)
    if got.shape != expected.shape or not np.allclose(got, expected, atol=TOLERANCE, rtol=1e-4):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
        raise VerificationError(
            f"{label}: predictions differ from those recorded at logging time (max difference {worst:.3g}); "
            "the artifact may be corrupted or the Keras/TensorFlow versions differ from the card's"
        )
