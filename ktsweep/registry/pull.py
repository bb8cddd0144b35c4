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

from ktsweep.core.errors import UsageError
from ktsweep.execution.trainable import MODEL_FILE
from ktsweep.registry.bundle import BUNDLE, CARD_FILE, EXAMPLE_FILE, load_example, named_arrays

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
        members = self.card.get("final", {}).get("ensemble")
        trial = (f"ensemble of trials {', '.join(m['trial_id'] for m in members)}" if members
                 else f"trial {self.card['lineage']['trial_id']}")
        return (
            f"pulled {self.source} (sweep {self.card['lineage']['sweep']}, {trial}, "
            f"{objective['name']}={objective['value']:.4f}) -> {self.out} (verified on {self.checked} examples)"
        )


def resolve(client: "MlflowClient", experiment_id: str, ref: str) -> tuple[str, str]:
    """The run holding the bundle for ``ref``, and a label for it."""
    from mlflow.exceptions import MlflowException

    from ktsweep.dashboards.leaderboard import sweep_run

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

    from ktsweep.execution.worker_backend import keep_tensorflow_out

    keep_tensorflow_out()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "saved_model" and keras.config.backend() != "tensorflow":
        raise UsageError(
            f"--format saved_model exports through TensorFlow, and Keras runs on {keras.config.backend()} here; "
            "pull with --format keras (the .keras file loads on any backend), or run with KERAS_BACKEND=tensorflow"
        )
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
        inputs, expected = load_example(os.path.join(bundle, EXAMPLE_FILE))
        import_model_code(card)
        model = keras.models.load_model(os.path.join(bundle, MODEL_FILE), safe_mode=True)
        check(label, expected, model.predict(inputs, verbose=0))
        if fmt == "saved_model":
            export = os.path.join(bundle, "saved_model")
            model.export(export, format="tf_saved_model", verbose=False)
            check(label + " (SavedModel)", expected, serve_saved_model(export, inputs))
        card["pulled_from"] = {"ref": ref, "source": label, "run_id": run_id}
        with open(os.path.join(bundle, "model.json"), "w") as fh:
            json.dump(card, fh, indent=2)
        os.remove(os.path.join(bundle, CARD_FILE))
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.move(bundle, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    checked = len(next(iter(named_arrays(inputs).values())))
    return Pulled(out=out, source=label, card=card, checked=checked)


def import_model_code(card: dict[str, Any]) -> None:
    """Import the HyperModel's module, which registers any subclassed model for deserialization.

    Only the module named in the model's own card (written by the sweep) is imported,
    and only when it is importable here; ``safe_mode`` loading stays on either way.
    """
    import importlib

    target = card.get("lineage", {}).get("hypermodel") or ""
    module = target.rpartition(".")[0]
    if module:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # a built-in-layers model loads without it; a subclassed one fails below with Keras' message


def serve_saved_model(path: str, inputs: Any) -> Any:
    """Predict through the SavedModel's serving signature, as TF Serving would."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if isinstance(inputs, dict):
        return loaded.serve({key: tf.constant(value) for key, value in inputs.items()})
    return loaded.serve(tf.constant(inputs))


def check(label: str, expected: dict[str, np.ndarray], got: Any) -> None:
    """Every output equal (within float tolerance) to the one recorded when the model was logged."""
    got_arrays = named_arrays(got)
    if set(got_arrays) != set(expected):
        raise VerificationError(
            f"{label}: the model's outputs {sorted(got_arrays)} are not the recorded {sorted(expected)}; "
            "the artifact does not match its card"
        )
    for key, want in expected.items():
        have = got_arrays[key]
        if have.shape != want.shape or not np.allclose(have, want, atol=TOLERANCE, rtol=1e-4):
            worst = float(np.max(np.abs(have - want))) if have.shape == want.shape else float("inf")
            raise VerificationError(
                f"{label}: predictions differ from those recorded at logging time (max difference {worst:.3g}); "
                "the artifact may be corrupted or the Keras/TensorFlow versions differ from the card's"
            )
