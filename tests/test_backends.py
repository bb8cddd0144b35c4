"""Keras 3 on every backend: chosen as Keras chooses it, the same in every worker, recorded, with no
TensorFlow loaded where the backend is not TensorFlow, and each worker held to its CPUs and GPU share.

The other backends run in fresh processes (this one runs Keras on TensorFlow). Which: ``jax`` (what
``make setup`` installs), or the list in ``KTSWEEP_OTHER_BACKENDS`` (``make test-torch`` sets ``torch``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from ktsweep.conf.compose import check_overrides, check_schema, compose
from ktsweep.core import backend
from ktsweep.core.errors import UsageError
from ktsweep.execution.worker_backend import worker_env
from ktsweep.tracking.records import find_runs

TESTS = Path(__file__).resolve().parent
OTHER_BACKENDS = os.environ.get("KTSWEEP_OTHER_BACKENDS", "jax").split(",")


def test_keras_default_is_what_keras_would_pick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backend.ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backend.keras_default() == "tensorflow"  # no keras.json
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    assert backend.keras_default() == "jax"
    monkeypatch.setenv(backend.ENV, "torch")  # the variable wins over the file, as in Keras
    assert backend.keras_default() == "torch"


def test_a_running_keras_keeps_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend.choose() == keras.config.backend() == "tensorflow"
    assert os.environ[backend.ENV] == "tensorflow"  # what the workers this process starts inherit
    with pytest.raises(UsageError, match="already running on tensorflow in this process and cannot switch to jax; "
                                         "set KERAS_BACKEND=jax before Keras is imported"):
        backend.choose("jax")
    with pytest.raises(UsageError, match="'numpy' cannot run a sweep; set backend= .* tensorflow, jax, torch"):
        backend.choose("numpy")


def test_a_backend_not_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "running", lambda: None)  # as a process that has not imported Keras yet
    monkeypatch.setattr(backend.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r'backend=torch needs torch installed; pip install "ktsweep\[torch\]"'):
        backend.choose("torch")


def test_the_backend_key_is_checked_and_one_command_runs_one_backend() -> None:
    with pytest.raises(Exception, match="backend must be one of tensorflow, jax, torch; got backend='mxnet'"):
        check_schema(compose(["backend=mxnet"]))
    with pytest.raises(UsageError, match="ask for backends jax, tensorflow; one process runs one Keras backend"):
        check_overrides(["backend=jax,tensorflow"], multirun=True)
    config = check_schema(compose([]))
    check_overrides([], multirun=False)
    assert config.backend is None  # None: as Keras picks it


@pytest.mark.parametrize(
    "name, cpus, gpus, given, expected, absent",
    [
        ("jax", 1, 0.5, {}, {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                             "XLA_CLIENT_MEM_FRACTION": "0.500"}, ["TF_FORCE_GPU_ALLOW_GROWTH"]),
        # the user's own (deprecated) fraction is kept, and ours not added: jaxlib 0.10 raises on both
        ("jax", 2, 0.25, {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".2", "XLA_FLAGS": "--xla_dump_to=/tmp/d"},
         {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": ".2"},
         ["XLA_CLIENT_MEM_FRACTION", "XLA_FLAGS"]),
        ("jax", 1, 2, {"XLA_FLAGS": "--xla_dump_to=/tmp/d"},
         {"XLA_FLAGS": "--xla_dump_to=/tmp/d --xla_cpu_multi_thread_eigen=false"},
         ["XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_CLIENT_MEM_FRACTION"]),
        ("tensorflow", 1, 0.5, {}, {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}, ["XLA_FLAGS", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"]),
        ("tensorflow", 1, 1, {}, {}, ["TF_FORCE_GPU_ALLOW_GROWTH", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"]),
        ("torch", 1, 0, {}, {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}, ["XLA_FLAGS", "TF_FORCE_GPU_ALLOW_GROWTH"]),
    ],
)
def test_worker_environment_per_backend_and_gpu_share(
    name: str, cpus: float, gpus: float, given: dict, expected: dict, absent: list
) -> None:
    env = worker_env(name, cpus=cpus, gpus=gpus, current=given)
    assert env[backend.ENV] == name
    for key, value in expected.items():
        assert env[key] == value
    for key in absent:
        assert key not in env


def trial_tags(root: Path, sweep: str) -> list[dict[str, str]]:
    import mlflow

    from ktsweep.tracking.records import local_uri

    client = mlflow.MlflowClient(local_uri(str(root)))
    experiment = client.get_experiment_by_name("ktsweep")
    return [run.data.tags for run in find_runs(client, experiment.experiment_id, sweep=sweep, kind="trial")]


def worker(tags: dict[str, str], key: str) -> str:
    return tags[f"ktsweep.worker.{key}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_a_sweep_on_another_backend_loads_no_tensorflow_and_its_model_serves_on_any(name: str, tmp_path: Path) -> None:
    """The CLI (Hyperband's hand-off, trial checkpoints, the final retrain and ensemble, the registry, pull,
    show) and the Python API on a user's own build_model, in one fresh process on ``name``."""
    import mlflow
    import pandas as pd

    from ktsweep.registry.bundle import load_example
    from ktsweep.tracking.records import local_uri

    root, out = tmp_path / "runs", tmp_path / "pulled"
    env = {**os.environ, backend.ENV: name, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, str(TESTS / "backend_probe.py"), str(root), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    driver = json.loads(done.stdout.strip().splitlines()[-1])
    assert driver["backend"] == name and driver["tensorflow_in_driver"] is False
    assert driver["api_best_model_accuracy"] == pytest.approx(driver["api_best_score"], abs=1e-6)
    assert f"Keras on {name} {backend.version(name)}" in done.stdout  # ktsweep show
    assert driver["saved_model_refused"] == (f"ktsweep: error: --format saved_model exports through TensorFlow, and Keras runs on "
                                             f"{name} here; pull with --format keras (the .keras file loads on any backend), "
                                             "or run with KERAS_BACKEND=tensorflow")

    for sweep in ("hb", "api"):
        trials = trial_tags(root, sweep)
        assert trials and all(worker(t, "backend") == name and worker(t, "tensorflow_loaded") == "False" for t in trials)
        assert all(worker(t, "threads") in ("1", "all") for t in trials)
    client = mlflow.MlflowClient(local_uri(str(root)))
    parent = client.search_runs([client.get_experiment_by_name("ktsweep").experiment_id],
                                "tags.`ktsweep.sweep` = 'hb' and tags.`ktsweep.kind` = 'sweep'")[0]
    assert parent.data.tags["ktsweep.backend"] == name
    card = json.loads((out / "model.json").read_text())
    assert card["backend"] == {"name": name, "version": backend.version(name)}
    assert len(card["final"]["ensemble"]) == 2 and card["final"]["retrained"] is True

    # Hyperband continued trials from their parents' saved models on this backend: each trained only its new epochs
    continued = [run for run in find_runs(client, parent.info.experiment_id, sweep="hb", kind="trial")
                 if int(run.data.params.get("tuner/initial_epoch", 0)) > 0]
    assert continued
    for run in continued:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(int(run.data.params["tuner/initial_epoch"]), int(run.data.params["tuner/epochs"])))

    # what was trained on `name` loads and predicts the same here, on TensorFlow: the pulled file and MLflow's model
    inputs, expected = load_example(str(out / "example.npz"))
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    x = np.random.default_rng(0).random((5, 64)).astype("float32")
    mlflow.set_tracking_uri(local_uri(str(root)))
    served = mlflow.pyfunc.load_model("models:/probe-digits@champion")
    np.testing.assert_allclose(np.asarray(served.predict(pd.DataFrame(x))), model.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected[""], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name, shares", [(other, ("0.5", "0")) for other in OTHER_BACKENDS])
def test_each_worker_takes_its_share_of_a_fake_gpu(name: str, shares: tuple[str, ...], tmp_path: Path) -> None:
    """Ray's fake GPUs: what each worker applies for half a GPU and for none (TensorFlow's settings: the table above)."""
    env = {**os.environ, backend.ENV: name, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    done = subprocess.run([sys.executable, str(TESTS / "fake_gpu_probe.py"), str(tmp_path), *shares],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    half, whole, none = (trial_tags(tmp_path, f"gpu-{share}") if share in shares else [] for share in ("0.5", "1", "0"))
    for tags in half:
        assert worker(tags, "visible_gpus") in ("0", "1")  # Ray's CUDA_VISIBLE_DEVICES: one GPU, shared
        if name == "jax":
            assert worker(tags, "gpu_memory") == "fraction 0.500, no preallocation"
            assert "XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_CLIENT_MEM_FRACTION=0.500" in worker(tags, "gpu_env")
        elif name == "tensorflow":
            assert worker(tags, "gpu_memory") == "growth"
            assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in worker(tags, "gpu_env")
    for tags in whole:
        assert worker(tags, "visible_gpus") in ("0", "1") and "gpu_memory" not in {k.rsplit(".", 1)[-1] for k in tags}
    for tags in none:
        assert worker(tags, "visible_gpus") == ""  # asked for no GPU: sees none (Ray 2.60 no longer hides them itself)
    assert len(half) == len(none) == 2 and len(whole) == (2 if "1" in shares else 0)


def test_the_gpu_bench_says_in_one_line_when_there_is_no_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no nvidia-smi on this PATH
    done = subprocess.run([sys.executable, str(TESTS.parent / "bench" / "gpu.py")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines() == [
        "bench/gpu.py: no NVIDIA GPU on this machine (nvidia-smi lists none); run it on one with a GPU"]
