"""The tracking writer: the sweep never waits on MLflow, and records keep their order or go to the journal."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ktsweep.tracking import writer as tracking_writer
from ktsweep.tracking.journal import Journal, Target, create_op, log_op, status_op


class FakeClient:
    tracking_uri = "sqlite:///nowhere.db"


@pytest.fixture
def slow_mlflow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """MLflow that takes 0.2 s per call, records what it got (and from which thread), and can fail."""
    applied: list[tuple[str, str, str]] = []

    def apply(client: Any, target: Target, op: dict[str, Any], *, dedupe: bool = False) -> None:
        time.sleep(0.2)
        if getattr(client, "down", False):
            raise ConnectionError("connection refused")
        applied.append((op["op"], op["trial"], threading.current_thread().name))

    monkeypatch.setattr(tracking_writer, "apply", apply)
    return applied


def writer(tmp_path: Path, client: Any = None) -> tracking_writer.TrackingWriter:
    return tracking_writer.TrackingWriter(client or FakeClient(), Target("0", "parent", "s"), Journal(str(tmp_path)))


def test_sending_does_not_wait_for_mlflow_and_close_delivers_in_order(tmp_path: Path, slow_mlflow: list) -> None:
    w = writer(tmp_path)
    ops = [create_op("0", {}), log_op("0", metrics=[("loss", 1.0, 0, 0)]), status_op("0", "FINISHED"), create_op("1", {})]
    started = time.perf_counter()
    for op in ops:
        w.send(op)
    assert time.perf_counter() - started < 0.1  # four 0.2 s calls would take 0.8 s on the caller's thread
    assert w.close() is None
    assert [(kind, trial) for kind, trial, _ in slow_mlflow] == [("create", "0"), ("log", "0"), ("status", "0"), ("create", "1")]
    assert {thread for _, _, thread in slow_mlflow} == {"ktsweep-mlflow-writer"}
    assert w.seconds_writing >= 0.8


def test_an_outage_sends_the_rest_to_the_journal_and_close_says_how_to_sync(tmp_path: Path, slow_mlflow: list) -> None:
    client = FakeClient()
    w = writer(tmp_path, client)
    w.send(create_op("0", {}))
    w.drain()
    client.down = True
    w.send(log_op("0", metrics=[("loss", 1.0, 0, 0)]))
    w.send(status_op("0", "FINISHED"))
    notice = w.close()
    assert [kind for kind, _, _ in slow_mlflow] == ["create"]
    assert [op["op"] for op in Journal(str(tmp_path)).pending()] == ["log", "status"]
    assert notice is not None and "ktsweep sync s" in notice and "connection refused" in notice


def test_pickling_waits_for_the_queue_and_the_copy_can_write(tmp_path: Path, slow_mlflow: list, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setattr(mlflow, "MlflowClient", lambda uri: FakeClient())
    w = writer(tmp_path)
    w.send(create_op("0", {}))
    copy = pickle.loads(pickle.dumps(w))  # Ray pickles callbacks with the experiment state
    assert len(slow_mlflow) == 1
    copy.send(create_op("1", {}))
    assert copy.close() is None and w.close() is None
    assert [trial for _, trial, _ in slow_mlflow] == ["0", "1"]


def test_a_late_write_keeps_the_time_of_the_event(tmp_path: Path) -> None:
    """A run's start and end are when the trial started and ended, not when the queue (or a replay) got to them."""
    from mlflow import MlflowClient

    from ktsweep.tracking.journal import apply

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    target = Target(client.create_experiment("late"), "parent", "s")
    created, finished = create_op("0", {"units": "8"}), status_op("0", "FINISHED")
    time.sleep(1.0)
    apply(client, target, created)
    apply(client, target, finished)
    run = client.get_run(target.runs["0"])
    assert run.info.start_time == created["time"] and run.info.end_time == finished["time"]
    assert run.info.status == "FINISHED" and run.data.params == {"units": "8"}
