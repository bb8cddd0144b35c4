"""Publishing, promotion policy and ``ktsweep pull`` against a real MLflow registry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ktsweep.core.errors import UsageError
from ktsweep.registry.promotion import champion_decision
from ktsweep.registry.pull import VerificationError, check, pull

REGISTRY = "reg-test"
ONE_TRIAL = ["sweep.max_trials=1", "hypermodel.space.n_hidden.min=1", "hypermodel.space.n_hidden.max=1",
             "hypermodel.space.n_hidden.default=1", f"tracking.registered_model={REGISTRY}"]
# Wide margins between the three (about 0.1, 0.7 and 0.95 validation accuracy): SGD at 1e-2
# for 2 epochs once landed near chance, below the "worse" model, and failed the test.
MEDIOCRE = ["sweep.epochs=1", "hypermodel.space.optimizer.values=[adam]", "hypermodel.space.n_neurons.max=16",
            "hypermodel.space.learning_rate.min=2e-3", "hypermodel.space.learning_rate.max=2e-3"]
WORSE = ["sweep.epochs=1", "hypermodel.space.optimizer.values=[sgd]", "hypermodel.space.n_neurons.max=16",
         "hypermodel.space.learning_rate.min=1e-4", "hypermodel.space.learning_rate.max=1e-4"]
BETTER = ["sweep.epochs=5", "hypermodel.space.optimizer.values=[adam]", "hypermodel.space.n_neurons.min=64",
          "hypermodel.space.learning_rate.min=5e-3", "hypermodel.space.learning_rate.max=5e-3"]


@pytest.mark.parametrize(
    "policy, current, candidate, direction, promoted",
    [
        ("always", {"ktsweep.objective": "val_accuracy", "ktsweep.data": "digits", "ktsweep.score": "0.9"}, 0.1, "max", True),
        ("never", None, 0.9, "max", False),
        ("if_better", None, 0.5, "max", True),
        ("if_better", {"ktsweep.objective": "val_accuracy", "ktsweep.data": "digits", "ktsweep.score": "0.9"}, 0.8, "max", False),
        ("if_better", {"ktsweep.objective": "val_accuracy", "ktsweep.data": "digits", "ktsweep.score": "0.9"}, 0.95, "max", True),
        ("if_better", {"ktsweep.objective": "val_loss", "ktsweep.data": "digits", "ktsweep.score": "0.5"}, 0.4, "min", True),
        ("if_better", {"ktsweep.objective": "val_loss", "ktsweep.data": "digits", "ktsweep.score": "0.5"}, 0.6, "min", False),
        ("if_better", {"ktsweep.objective": "val_loss", "ktsweep.data": "housing", "ktsweep.score": "9"}, 0.1, "min", False),
    ],
)
def test_champion_decision(policy: str, current: Any, candidate: float, direction: str, promoted: bool) -> None:
    objective = "val_accuracy" if direction == "max" else "val_loss"
    decided, reason = champion_decision(policy, candidate=candidate, current=current, objective=objective, direction=direction, data="digits")
    assert decided is promoted and reason


def test_check_fails_loudly_on_a_mismatch() -> None:
    check("m", {"": np.zeros((2, 3))}, np.zeros((2, 3)) + 1e-7)
    check("m", {"main": np.zeros(2), "aux": np.ones(2)}, {"main": np.zeros(2), "aux": np.ones(2)})
    with pytest.raises(VerificationError, match="predictions differ from those recorded"):
        check("m", {"": np.zeros((2, 3))}, np.ones((2, 3)))
    with pytest.raises(VerificationError, match="outputs"):
        check("m", {"main": np.zeros(2), "aux": np.ones(2)}, {"main": np.zeros(2)})


@pytest.fixture(scope="module")
def three_sweeps(run_sweep: Any) -> dict[str, Any]:
    """A mediocre sweep, then a worse one, then a better one, all registering under one name."""
    outcomes = {label: run_sweep(*ONE_TRIAL, *overrides)[0] for label, overrides in
                (("mediocre", MEDIOCRE), ("worse", WORSE), ("better", BETTER))}
    return outcomes


def test_if_better_moves_the_alias_only_for_a_better_model(three_sweeps: dict[str, Any], mlflow_client: Any) -> None:
    mediocre, worse, better = three_sweeps["mediocre"], three_sweeps["worse"], three_sweeps["better"]
    assert mediocre.best_score > worse.best_score and better.best_score > mediocre.best_score
    assert (mediocre.promoted, worse.promoted, better.promoted) == (True, False, True)
    champion = mlflow_client.get_model_version_by_alias(REGISTRY, "champion")
    assert str(champion.version) == better.model_version
    assert champion.tags["ktsweep.sweep"] == better.name
    kept = mlflow_client.get_run(worse.parent_run_id)
    assert kept.data.tags["ktsweep.promotion"] == "kept"
    assert "not better" in kept.data.tags["ktsweep.promotion_reason"]
    assert kept.data.metrics["champion_score_before"] == pytest.approx(mediocre.best_score)
    assert kept.data.metrics["candidate_score"] == pytest.approx(worse.best_score)
    version = mlflow_client.get_model_version(REGISTRY, worse.model_version)
    assert version.tags["ktsweep.trial_id"] and version.tags["ktsweep.parent_run_id"] == worse.parent_run_id


def _digits_val() -> tuple[np.ndarray, np.ndarray]:
    from ktsweep.data.loaders import load_digits

    data = load_digits(name="digits", val_fraction=0.2, test_fraction=0.2, seed=42)
    return data.x_val, data.y_val


@pytest.mark.parametrize("ref_kind", ["sweep", "alias", "version"])
def test_pull_writes_a_verified_model(ref_kind: str, three_sweeps: dict[str, Any], mlflow_client: Any, tmp_path: Path) -> None:
    import keras

    better, mediocre = three_sweeps["better"], three_sweeps["mediocre"]
    ref, expected = {
        "sweep": (better.name, better),
        "alias": (f"{REGISTRY}@champion", better),
        "version": (f"{REGISTRY}/{mediocre.model_version}", mediocre),
    }[ref_kind]
    pulled = pull(mlflow_client, better.experiment_id, ref, out=str(tmp_path / "out"))
    card = json.loads((tmp_path / "out" / "model.json").read_text())
    assert card["lineage"]["sweep"] == expected.name and card["lineage"]["trial_id"] == expected.best_trial_id
    assert set(card["hyperparameters"]) == {"n_hidden", "n_neurons", "learning_rate", "optimizer"}
    assert card["data"]["input_shape"] == [64] and card["versions"]["keras"]
    assert "verified on 5 examples" in pulled.summary()
    model = keras.models.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    x, y = _digits_val()
    accuracy = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))
    assert accuracy == pytest.approx(expected.best_score, abs=1e-6)


def test_pull_saved_model_serves(three_sweeps: dict[str, Any], mlflow_client: Any, tmp_path: Path) -> None:
    """A SavedModel for TF Serving on TensorFlow; on the other backends, one line pointing to the .keras file."""
    import keras

    better = three_sweeps["better"]
    if keras.config.backend() != "tensorflow":
        with pytest.raises(UsageError, match=f"exports through TensorFlow, and Keras runs on {keras.config.backend()} "
                                             "here; pull with --format keras"):
            pull(mlflow_client, better.experiment_id, better.name, out=str(tmp_path / "out"), fmt="saved_model")
        return
    import tensorflow as tf

    pull(mlflow_client, better.experiment_id, better.name, out=str(tmp_path / "out"), fmt="saved_model")
    served = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    x, y = _digits_val()
    accuracy = float(np.mean(np.asarray(served.serve(tf.constant(x))).argmax(axis=1) == y))
    assert accuracy == pytest.approx(better.best_score, abs=1e-6)


def test_champion_loads_through_pyfunc(three_sweeps: dict[str, Any], store_root: Path) -> None:
    import mlflow
    import pandas as pd

    from ktsweep.tracking.records import local_uri

    mlflow.set_tracking_uri(local_uri(str(store_root)))
    model = mlflow.pyfunc.load_model(f"models:/{REGISTRY}@champion")
    x, y = _digits_val()
    out = np.asarray(model.predict(pd.DataFrame(x)))
    assert out.shape == (len(x), 10)
    assert float(np.mean(out.argmax(axis=1) == y)) == pytest.approx(three_sweeps["better"].best_score, abs=1e-6)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("no-such-sweep", "no sweep named 'no-such-sweep'"),
        (f"{REGISTRY}@nope", "no registered model version 'reg-test@nope'"),
        ("no-such-model/1", "no registered model version 'no-such-model/1'"),
    ],
)
def test_pull_unknown_refs(ref: str, message: str, three_sweeps: dict[str, Any], mlflow_client: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=message):
        pull(mlflow_client, three_sweeps["better"].experiment_id, ref, out=str(tmp_path / "out"))


def test_pull_refuses_a_nonempty_folder_without_force(three_sweeps: dict[str, Any], mlflow_client: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    experiment = three_sweeps["better"].experiment_id
    with pytest.raises(UsageError, match="exists and is not empty.*--force"):
        pull(mlflow_client, experiment, three_sweeps["better"].name, out=str(out))
    assert (out / "keep.txt").exists()
    pull(mlflow_client, experiment, three_sweeps["better"].name, out=str(out), force=True)
    assert (out / "model.keras").exists() and not (out / "keep.txt").exists()


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(three_sweeps: dict[str, Any], store_root: Path) -> None:
    from ktsweep.tracking.records import local_uri

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_cli = shutil.which("mlflow", path=os.path.dirname(sys.executable))
    env = {**os.environ, "MLFLOW_TRACKING_URI": local_uri(str(store_root)),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}  # it execs uvicorn
    proc = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", f"models:/{REGISTRY}@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    x, _ = _digits_val()
    body = json.dumps({"inputs": x[:3].tolist()}).encode()
    try:
        deadline = time.time() + 180
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"mlflow models serve did not answer: {proc.stdout.read().decode()[-2000:] if proc.poll() is not None else 'timeout'}")
                time.sleep(1)
        predictions = np.asarray(answer["predictions"])
        assert predictions.shape == (3, 10)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
