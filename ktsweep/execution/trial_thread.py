"""One long-lived thread per worker process that runs every trial's training.

Ray Tune runs a function trainable on a new thread for each trial, and a reused actor runs
hundreds of trials. TensorFlow keeps native state for each thread that runs ops and does not
give it back when the thread ends: ~110 KB per thread, measured in a plain loop of a trial's
steps (build, one epoch, save, ``clear_session``) run on a fresh thread each time, against
~7 KB per trial on one thread (bench/RESULTS.md, section 8). Tune's thread now only waits
here while the training runs on this one thread; reports (``tune.report`` goes to the
process's session, from any thread) and Tune's stop (``SystemExit`` raised inside a report)
come back to Tune's thread unchanged.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class TrialThread:
    """A daemon thread that runs submitted calls one after another (a process exits without waiting)."""

    def __init__(self) -> None:
        self._jobs: "queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple, dict]]" = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="ktsweep-trial", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` on this thread and wait: its result, or its exception (``SystemExit`` too) re-raised here."""
        done: Future = Future()
        self._jobs.put((done, fn, args, kwargs))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, fn, args, kwargs = self._jobs.get()
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # Tune's stop is a SystemExit inside tune.report: the caller's to raise
                done.set_exception(exc)


_THREAD: Optional[TrialThread] = None
_LOCK = threading.Lock()


def trial_thread() -> TrialThread:
    """This process's trial thread, started on first use."""
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            _THREAD = TrialThread()
        return _THREAD
