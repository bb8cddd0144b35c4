"""A trial killed mid-way continues from its own checkpoint: the epochs it had done are not trained
again, MLflow holds each epoch once, and its best-epoch bookkeeping survives."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import EPOCH_LOG, PAUSED_ONCE_MARKER, STOPPING_LOG

from ktsweep.tracking.records import TAG_STATUS, find_runs

TWELVE_EPOCHS = ["hypermodel._target_=fakes.PausesOnce", "sweep.epochs=12", "sweep.max_trials=1",
                 "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=32", "tracking.register=false"]


def fresh_files() -> None:
    for path in (EPOCH_LOG, PAUSED_ONCE_MARKER, STOPPING_LOG):
        if os.path.exists(path):
            os.remove(path)


def epochs_trained() -> dict[int, list[int]]:
    """pid -> the epochs that process trained, from the fake HyperModel's own log."""
    trained: dict[int, list[int]] = {}
    for line in Path(EPOCH_LOG).read_text().splitlines():
        pid, what = line.split()
        if what != "paused":
            trained.setdefault(int(pid), []).append(int(what))
    return trained


def paused_pid(timeout: float = 300) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(EPOCH_LOG):
            for line in Path(EPOCH_LOG).read_text().splitlines():
                if line.endswith(" paused"):
                    return int(line.split()[0])
        time.sleep(0.2)
    raise AssertionError(f"no trial paused within {timeout} s")


def kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + 30
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.1)


def assert_resumed_once(trained: dict[int, list[int]], client: Any, experiment_id: str, sweep: str,
                        sweep_dir: Path) -> None:
    assert list(trained.values()) == [list(range(6)), list(range(6, 12))], trained  # epochs 7 to 12 only, after the kill
    (run,) = find_runs(client, experiment_id, sweep=sweep, kind="trial")
    assert run.data.tags[TAG_STATUS] == "COMPLETED" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(12))  # continuous, each epoch once
    best = max(history, key=lambda m: (m.value, -m.step))
    assert run.data.metrics["objective"] == pytest.approx(best.value)  # the best epoch, before or after the kill
    assert run.data.metrics["best_epoch"] == best.step
    assert not (sweep_dir / "trials" / "trial_0").exists()  # a finished trial keeps no mid-trial checkpoint


@pytest.mark.backend
def test_worker_killed_mid_trial_continues_from_its_checkpoint(run_sweep: Any, mlflow_client: Any,
                                                                store_root: Path) -> None:
    fresh_files()
    killed: list[int] = []

    def kill_when_paused() -> None:
        pid = paused_pid()
        kill_and_wait(pid)
        killed.append(pid)

    killer = threading.Thread(target=kill_when_paused, daemon=True)
    killer.start()
    try:  # with an EarlyStopping whose patience outlasts the trial: its state must survive the kill
        outcome, _ = run_sweep(*TWELVE_EPOCHS, "executor.max_failures=1", "sweep.callbacks.early_stopping.enabled=true",
                               "sweep.callbacks.early_stopping.patience=50")
        trained = epochs_trained()
        stopping = {tuple(line.split()[:3]): line.split()[3:] for line in Path(STOPPING_LOG).read_text().splitlines()}
    finally:
        killer.join(timeout=1)
        fresh_files()
    assert killed and outcome.status == "FINISHED" and outcome.completed == 1, outcome.error
    assert next(iter(trained)) == killed[0]  # the first process trained until it was killed
    first, second = trained
    wait, best = stopping[(str(first), "end", "5")]  # what EarlyStopping had counted when the worker died
    assert best != "None"
    assert stopping[(str(second), "begin", "6")] == [wait, best]  # where the retried trial starts counting
    assert_resumed_once(trained, mlflow_client, outcome.experiment_id, outcome.name,
                        store_root / "sweeps" / outcome.name)
    (run,) = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    assert run.data.tags["ktsweep.attempts"] == "2"


@pytest.mark.slow
def test_driver_killed_mid_trial_then_resumed_continues_from_its_checkpoint(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from test_cli import KTSWEEP, ktsweep, user_env

    from ktsweep.tracking.records import local_uri

    fresh_files()
    env = {**user_env(), "PYTHONPATH": str(Path(__file__).resolve().parent)}
    name = "killed-in-trial"
    proc = subprocess.Popen([KTSWEEP, "run", *TWELVE_EPOCHS, f"sweep.name={name}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        worker = paused_pid()
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and Ray
        proc.wait()
        kill_and_wait(worker)  # the machine went down: its trial's worker too
        done = ktsweep("resume", name, cwd=tmp_path, env={"PYTHONPATH": env["PYTHONPATH"]})
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
        experiment = client.get_experiment_by_name("ktsweep").experiment_id
        assert_resumed_once(epochs_trained(), client, experiment, name, tmp_path / "ktsweep-runs" / "sweeps" / name)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        fresh_files()
