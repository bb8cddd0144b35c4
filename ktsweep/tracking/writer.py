"""Delivers the tracking callback's journal operations to MLflow on a background thread.

Ray Tune runs callbacks on its own event loop: an MLflow call made there holds up
every trial's next result, and a slow or unreachable server would hold up the
sweep. The callback only queues operations; one writer thread applies them in
order (the same order the callback made them, so a run is created before it is
logged to). If a write fails, the writer goes offline: operations are appended
to the sweep's journal (``ktsweep.tracking.journal``) and handed over when MLflow answers
again, retried every ``RETRY_SECONDS``. A journal left by an earlier attempt is handed
over first, so ``ktsweep resume`` sends it as ``ktsweep sync`` would.

Closing waits for the queue. A second Ctrl-C (``stop_waiting``, set by
``ktsweep.search.interrupts``) ends that wait: the operation in flight and everything
still queued go to the journal, in order, and nothing is lost; MLflow may then
have the in-flight one twice over, which replaying skips.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional

from ktsweep.tracking.journal import RETRY_SECONDS, Journal, Target, apply

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
        self.kept = 0  # operations a second Ctrl-C moved from the queue to the journal
        self._last_retry = 0.0
        if journal.pending():  # kept by an earlier attempt (an outage, a second Ctrl-C): hand it over first
            self.offline_since, self.offline_reason = time.time(), "records kept by an earlier attempt"
        self._init_thread_state()

    def _init_thread_state(self) -> None:
        self.stop_waiting = threading.Event()  # a second Ctrl-C: closing stops waiting for MLflow
        self.after_keep: Optional[Callable[[], None]] = None  # called once the queue is in the journal
        self._cond = threading.Condition()
        self._ops: "deque[dict[str, Any]]" = deque()
        self._busy: Optional[dict[str, Any]] = None  # the operation being delivered
        self._ending = False  # the thread ends once the queue is empty
        self._handed_over = False
        self._thread: Optional[threading.Thread] = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment state: keep the records, not the thread.
        self.drain()
        skip = ("stop_waiting", "after_keep", "_cond", "_ops", "_busy", "_ending", "_handed_over", "_thread")
        state = {k: v for k, v in self.__dict__.items() if k not in skip}
        state["client"] = self.client.tracking_uri
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        self.__dict__.update(state)
        self.client = MlflowClient(state["client"])
        self._init_thread_state()

    def send(self, op: dict[str, Any]) -> None:
        """Queue one operation; returns at once."""
        with self._cond:
            if self._handed_over:  # closing after a second Ctrl-C: straight to the journal
                self.journal.append(op)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ktsweep-mlflow-writer", daemon=True)
                self._thread.start()
            self._ops.append(op)
            self._cond.notify_all()

    def queued(self) -> int:
        """Operations not yet delivered (in flight included)."""
        return len(self._ops) + (self._busy is not None)

    def holds_nothing(self) -> bool:
        """True when exiting now would lose no operation (all delivered, journaled or handed over).
        Reads no lock: a signal handler calls it."""
        return self._handed_over or not (self._ops or self._busy is not None)

    def drain(self) -> bool:
        """Wait until every queued operation is in MLflow or in the journal; False if
        ``stop_waiting`` (a second Ctrl-C) ended the wait first."""
        with self._cond:
            while self._ops or self._busy is not None:
                if self.stop_waiting.is_set() or self._handed_over:
                    return False
                self._cond.wait(0.1)  # short: a second Ctrl-C only sets an event
        return True

    def keep_queued(self) -> int:
        """Move the operation in flight and everything queued to the journal, in order; returns how many.

        The in-flight one may still reach MLflow as well: replaying skips what is stored.
        """
        with self._cond:
            if not self._handed_over:
                ops = [op for op in (self._busy, *self._ops) if op is not None]
                self._ops.clear()
                self.journal.extend(ops)
                self._handed_over = self._ending = True  # the thread ends after its current call
                self.kept += len(ops)
                self._cond.notify_all()
        if self.after_keep is not None:
            self.after_keep()
        return self.kept

    def close(self) -> Optional[str]:
        """At the end of the sweep: deliver everything (or, after a second Ctrl-C, keep it in the
        journal); a one-line notice if MLflow still does not answer."""
        try:
            delivered = self.drain()
        except KeyboardInterrupt as exc:  # a first Ctrl-C while a finished sweep closes: keep, then stop
            if self.keep_queued():
                exc.add_note(self.kept_notice())
            raise
        if not delivered:
            self.keep_queued()  # the thread may be stuck in a slow call: it ends by itself, unwaited
        elif self._thread is not None:
            with self._cond:
                self._ending = True
                self._cond.notify_all()
            self._thread.join()
        self._thread = None
        if self.offline_since is None:
            return None
        if not self._handed_over:
            self._last_retry = 0.0
            if self._reconnect():
                return None
        since = time.strftime("%H:%M:%S", time.localtime(self.offline_since))
        return (
            f"MLflow at {self.client.tracking_uri} stopped answering at {since} ({self.offline_reason}); "
            f"{len(self.journal.pending())} trial records are kept in {self.journal.path}: "
            f"run `ktsweep sync {self.target.sweep}` when it is back"
        )

    def kept_notice(self) -> Optional[str]:
        """What a second Ctrl-C kept, and how to send it; None if it kept nothing."""
        if not self.kept:
            return None
        return (
            f"{self.kept} queued trial records were kept in {self.journal.path}: "
            f"`ktsweep sync {self.target.sweep}` sends them to MLflow"
        )

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ops and not self._ending:
                    self._cond.wait()
                if not self._ops:
                    return
                op = self._busy = self._ops.popleft()
            try:
                self._deliver(op)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def _keep(self, op: dict[str, Any]) -> None:
        with self._cond:
            if not self._handed_over:  # else it went to the journal with the queue
                self.journal.append(op)
                self._busy = None  # kept: a handover now must not keep it twice

    def _deliver(self, op: dict[str, Any]) -> None:
        """Apply now, or keep for later: MLflow being down must not stop (or lose) the sweep."""
        if self.offline_since is not None and not self._reconnect():
            self._keep(op)
            return
        started = time.perf_counter()
        try:
            apply(self.client, self.target, op)
        except Exception as exc:  # requests, sqlalchemy, MlflowException: all mean "not recorded"
            self.offline_since, self._last_retry = time.time(), time.time()
            self.offline_reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            self._keep(op)
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
