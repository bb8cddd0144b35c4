"""The trial records of a sweep when MLflow cannot take them: kept on disk, replayed later.

Every write the tracking callback makes is an operation (``create``, ``log``,
``status``) keyed by the oracle trial id, not by MLflow run id, so it can be
applied now or after an outage. While MLflow answers, operations are applied
at once; when a write fails the callback goes offline and appends every
operation to ``sweeps/NAME/tracking-journal.jsonl`` instead, so training goes
on and nothing is lost. ``replay`` applies a journal idempotently (a run is
found by its trial tag before one is created; a metric point already stored
is not sent again), which is what ``ktsweep sync``, the in-sweep reconnection
and a resumed sweep's writer all use. A second Ctrl-C while the sweep closes
moves the writer's queue here too (``ktsweep.tracking.writer``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.tracking.dataset_input import log_dataset
from ktsweep.tracking.records import TAG_KIND, TAG_PARENT, TAG_SWEEP, TAG_TRIAL, find_runs, trial_run_name

if TYPE_CHECKING:
    from mlflow import MlflowClient

JOURNAL_FILE = "tracking-journal.jsonl"
RETRY_SECONDS = 30.0  # while offline, how often the callback tries to reconnect
BATCH = 1000  # MLflow's limit of metrics per log_batch


@dataclass
class Target:
    """Where a sweep's trial records go: the experiment, the sweep's parent run, the sweep's name."""

    experiment_id: str
    parent_run_id: str
    sweep: str
    runs: dict[str, str] = field(default_factory=dict)  # oracle trial id -> MLflow run id

    def load_runs(self, client: "MlflowClient") -> None:
        found = find_runs(client, self.experiment_id, sweep=self.sweep, kind="trial")
        self.runs.update({run.data.tags[TAG_TRIAL]: run.info.run_id for run in found})


def now_ms() -> int:
    """The event's time: operations carry it, so a run's start and end are right however
    late the write goes out (the writer thread's queue, or a replay after an outage)."""
    return int(time.time() * 1000)


def create_op(
    kt_id: str, params: dict[str, str], tags: Optional[dict[str, str]] = None, dataset: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    """``dataset``: the sweep's dataset input (``ktsweep.tracking.dataset_input``), logged on the trial's run."""
    return {"op": "create", "trial": kt_id, "params": params, "tags": tags or {}, "time": now_ms(), "dataset": dataset}


def log_op(
    kt_id: Optional[str], *, metrics: list[tuple[str, float, int, int]] = (), tags: Optional[dict[str, str]] = None,
    params: Optional[dict[str, str]] = None,
) -> dict[str, Any]:
    """Metric points are (key, value, timestamp_ms, step). ``kt_id`` None: the sweep's own (parent) run.
    ``params`` may repeat logged ones (same values)."""
    return {"op": "log", "trial": kt_id, "metrics": [list(m) for m in metrics], "tags": tags or {}, "params": params or {}}


def status_op(kt_id: str, status: str) -> dict[str, Any]:
    return {"op": "status", "trial": kt_id, "status": status, "time": now_ms()}


def apply(client: "MlflowClient", target: Target, op: dict[str, Any], *, dedupe: bool = False) -> None:
    """Apply one operation. ``dedupe``: skip metric points MLflow already has (replay after an outage)."""
    from mlflow.entities import Metric, Param, RunTag

    kt_id = op["trial"]
    if op["op"] == "create":
        extra = op.get("tags", {})
        if kt_id in target.runs:  # a retry, a resumed sweep, or an earlier replay: the same run again
            client.update_run(target.runs[kt_id], status="RUNNING")
            # The params again (same values: MLflow accepts them): an interrupted create may have
            # made the run without them.
            client.log_batch(target.runs[kt_id], params=[Param(k, v[:6000]) for k, v in op["params"].items()],
                             tags=[RunTag(k, v) for k, v in extra.items()])
        else:
            tags = {TAG_PARENT: target.parent_run_id, TAG_KIND: "trial", TAG_SWEEP: target.sweep, TAG_TRIAL: kt_id}
            run = client.create_run(target.experiment_id, run_name=trial_run_name(target.sweep, kt_id),
                                    tags={**tags, **extra}, start_time=op.get("time"))
            target.runs[kt_id] = run.info.run_id
            client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in op["params"].items()])
        if op.get("dataset"):  # MLflow keeps one input per run and dataset, however often it is logged
            log_dataset(client, target.runs[kt_id], op["dataset"])
        return
    run_id = target.parent_run_id if kt_id is None else target.runs.get(kt_id)
    if run_id is None:
        return  # no run to write to (its creation was never recorded): nothing sensible to attach to
    if op["op"] == "status":
        if op["status"] == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status=op["status"], end_time=op.get("time"))
        return
    points = [tuple(m) for m in op["metrics"]]
    if (dedupe or op.get("new_steps_only")) and points:
        stored = _stored_points(client, run_id, {p[0] for p in points})
        points = [p for p in points if (p[0], p[2], p[3]) not in stored]
        if op.get("new_steps_only"):  # a trial resumed inside: each (metric, epoch) once, the first value kept
            steps = {(key, step) for key, _, step in stored}
            points = [p for p in points if (p[0], p[3]) not in steps]
    tags = [RunTag(k, v) for k, v in op["tags"].items()]
    params = [Param(k, v[:6000]) for k, v in op.get("params", {}).items()]
    metrics = [Metric(key, float(value), int(stamp), int(step)) for key, value, stamp, step in points]
    for start in range(0, max(len(metrics), 1), BATCH):
        chunk = metrics[start : start + BATCH]
        if chunk or ((tags or params) and start == 0):
            client.log_batch(run_id, metrics=chunk, tags=tags if start == 0 else [], params=params if start == 0 else [])


def _stored_points(client: "MlflowClient", run_id: str, keys: set[str]) -> set[tuple[str, int, int]]:
    stored = set()
    for key in keys:
        stored.update((key, m.timestamp, m.step) for m in client.get_metric_history(run_id, key))
    return stored


class Journal:
    """The on-disk list of operations MLflow has not taken yet.

    The writer thread (appending while offline, replaying when back) and the main thread
    (a second Ctrl-C handing the queue over) share one journal: a lock keeps an append from
    landing between a replay's read and its setting the file aside.
    """

    def __init__(self, sweep_dir: str) -> None:
        self.path = os.path.join(sweep_dir, JOURNAL_FILE)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # pickled with the tracking callback; the lock is not
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self._lock = state["path"], threading.Lock()

    def append(self, op: dict[str, Any]) -> None:
        self.extend([op])

    def extend(self, ops: list[dict[str, Any]]) -> None:
        """Append operations with one write, then fsync: an exit right after loses none of them."""
        if not ops:
            return
        data = "".join(json.dumps(op) + "\n" for op in ops).encode()
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # after a line cut short: start a fresh one
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._lines()]

    def _lines(self) -> list[str]:
        """The complete lines; one cut short (a process killed mid-write) was never kept."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as fh:
            return [line for line in fh if _complete(line)]

    def replay(self, client: "MlflowClient", target: Target) -> int:
        """Apply every pending operation, then set the journal aside; returns how many were applied.

        Raises whatever MLflow raises if it is still unreachable; the journal is then
        kept whole, and replaying it again is safe.
        """
        ops = self.pending()
        if not ops:
            return 0
        target.load_runs(client)
        for op in ops:
            apply(client, target, op, dedupe=True)
        self._set_aside(len(ops))
        return len(ops)

    def _set_aside(self, done: int) -> None:
        """Archive the first ``done`` operations; any appended during the replay stay pending."""
        archive = f"{self.path}.synced-{time.strftime('%Y%m%d-%H%M%S')}"
        with self._lock:
            lines = self._lines()
            if len(lines) <= done:
                os.replace(self.path, archive)
                return
            with open(archive, "w") as fh:
                fh.writelines(lines[:done])
            rest = f"{self.path}.rest"
            with open(rest, "w") as fh:
                fh.writelines(lines[done:])
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(rest, self.path)


def _complete(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True
