"""Delivers the tracking callback's journal operations to MLflow on a background thread.

Ray Tune runs callbacks on its own event loop: an MLflow call made there holds up
every trial's next result, and a slow or unreachable server would hold up the
sweep. The callback only queues operations; one writer thread applies them in
order (the same order the callback made them, so a run is created before it is
logged to). If a write fails, the writer goes offline: operations are appended
to the sweep's journal (``ktsweep.search.journal``) and handed over when MLflow answers
again, retried every ``RETRY_SECONDS``.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.search.journal import RETRY_SECONDS, Journal, Target, apply

if TYPE_CHECKING:
    from mlflow import MlflowClient


class TrackingWriter:
    """One ordered stream of operations to MLflow, or to the journal while MLflow is down."""

    def __init__(self, client: "MlflowClient", target: Target, journal: Journal) -> None:
        self.client = client
        self.target = target
        self.journal = journal
        self.offline_since: Optional[float] = None
        self.offline_reason = ""
        self.seconds_writing = 0.0  # time in MLflow calls, on the writer thread (bench reads it)
        self._last_retry = 0.0
        self._queue: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment state: keep the records, not the thread.
        self.drain()
        state = {k: v for k, v in self.__dict__.items() if k not in ("_queue", "_thread")}
        state["client"] = self.client.tracking_uri
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        self.__dict__.update(state)
        self.client = MlflowClient(state["client"])
        self._queue, self._thread = queue.Queue(), None

    def send(self, op: dict[str, Any]) -> None:
        """Queue one operation; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ktsweep-mlflow-writer", daemon=True)
            self._thread.start()
        self._queue.put(op)

    def drain(self) -> None:
        """Wait until every queued operation is in MLflow or in the journal."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> Optional[str]:
        """At the end of the sweep: deliver everything; a one-line notice if MLflow still does not answer."""
        self.drain()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self.offline_since is None:
            return None
        self._last_retry = 0.0
        if self._reconnect():
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.offline_since))
        return (
            f"MLflow at {self.client.tracking_uri} stopped answering at {since} ({self.offline_reason}); "
            f"{len(self.journal.pending())} trial records are kept in {self.journal.path}: "
            f"run `ktsweep sync {self.target.sweep}` when it is back"
        )

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            op = self._queue.get()
            try:
                if op is None:
                    return
                self._deliver(op)
            finally:
                self._queue.task_done()

    def _deliver(self, op: dict[str, Any]) -> None:
        """Apply now, or keep for later: MLflow being down must not stop (or lose) the sweep."""
        if self.offline_since is not None and not self._reconnect():
            self.journal.append(op)
            return
        started = time.perf_counter()
        try:
            apply(self.client, self.target, op)
        except Exception as exc:  # requests, sqlalchemy, MlflowException: all mean "not recorded"
            self.offline_since, self._last_retry = time.time(), time.time()
            self.offline_reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            self.journal.append(op)
        finally:
            self.seconds_writing += time.perf_counter() - started

    def _reconnect(self) -> bool:
        """While offline, try every ``RETRY_SECONDS`` to hand the journal over; True when back online."""
        if time.time() - self._last_retry < RETRY_SECONDS:
            return False
        self._last_retry = time.time()
        started = time.perf_counter()
        try:
            self.journal.replay(self.client, self.target)
        except Exception:
            return False
        finally:
            self.seconds_writing += time.perf_counter() - started
        self.offline_since = None
        return True
