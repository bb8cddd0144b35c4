"""A local Ray whose trial workers are warm when the trials start, and gone as soon as the command is done.

What a cold sweep paid beyond plain Keras Tuner, and what this module does about it (measured in
``docs/research/ray-actors-startup-and-worker-memory.md`` and ``bench/RESULTS.md``):

- Ray started only after the driver had imported TensorFlow. ``start_early`` starts it on a thread
  while the driver imports; the thread stays alive, because Ray's GCS and raylet are killed when the
  thread that forked them ends (``PR_SET_PDEATHSIG``).
- Every trial actor got a new process that imported TensorFlow on the critical path. Ray prestarts
  one worker per CPU; through ``execution/preload.py`` they import Keras (on the sweep's backend:
  TensorFlow only when that is it), Keras Tuner and the trainable as soon as the raylet is up (a
  worker started for a data task imports what its task needs). Two things kept trial actors out of
  them: the raylet killed idle workers
  after one second, and Tune gives its actor classes a ``runtime_env`` that prestarted workers do
  not have. Locally the workers inherit this process's environment anyway, so ``use_prestarted_workers``
  registers Tune's actor classes without one (only for a Ray this process started).
- Ray's shutdown at exit and TensorFlow's interpreter teardown took seconds. ``shut_down_early``
  overlaps ``ray.shutdown()`` with the sweep's closing; ``leave`` then ends the process with
  ``os._exit`` once Ray is down and output is flushed.

A cluster (``executor.address``) or a Ray someone else started is never touched.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

PRELOAD = ("keras", "keras_tuner", "ktsweep.execution.trainable")  # Keras imports its backend's library
PRELOADER = "ktsweep.execution.preload"  # what Ray imports in each worker: PRELOAD, unless a data task's
DATA_TASKS = "KTSWEEP_DATA_TASKS"  # set in the environment of the workers Ray starts for data tasks
# The raylet kills workers idle for more than 1 s by default: that is before Tune's first leases
# arrive whenever the driver takes longer than that between ray.init and tuner.fit().
IDLE_WORKERS_KEPT_MS = 60_000
# ray.shutdown() takes about a second; one that hangs must not keep the finished command alive.
SHUTDOWN_WAIT_SECONDS = 60


def worker_preload(backend: str) -> tuple[str, ...]:
    """What a prestarted worker imports, on the backend in its ``KERAS_BACKEND``."""
    return ("tensorflow", *PRELOAD) if backend == "tensorflow" else PRELOAD


class _State:
    owned = False  # this process started the local Ray it uses
    early: Optional[threading.Thread] = None  # the keep-alive thread of start_early
    ready = threading.Event()
    error: Optional[BaseException] = None
    stopping: Optional[threading.Thread] = None  # ray.shutdown() running while the sweep closes


def will_start_local_ray(address: Optional[str]) -> bool:
    """True when ``ray.init(address)`` would start a new local Ray rather than join a running one."""
    if address is not None:
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None) is None
    except Exception:  # a Ray without this helper: join-or-start as Ray decides, without the extras
        return False


def ray_init(address: Optional[str], **kwargs: Any) -> None:
    """``ray.init``, warm-worker settings included when it starts a local Ray."""
    import ray

    if will_start_local_ray(address):
        os.environ.setdefault("PL_DISABLE_FORK", "1")  # what Tune's runtime_env would have set
        system_config = {"preload_python_modules": [PRELOADER], "idle_worker_killing_time_threshold_ms": IDLE_WORKERS_KEPT_MS}
        ray.init(address=address, _system_config=system_config, **kwargs)
        _State.owned = True
    else:
        ray.init(address=address, **kwargs)


def start_early(start: Callable[[], None]) -> None:
    """Run ``start`` (which calls ``init``) on a thread that lives as long as the process.

    Until ``wait_started`` returns, this process must import nothing of Ray's beyond ``import ray``:
    ``ray.init`` imports ~300 modules, and two threads importing one of Ray's circular package
    imports at once fail with "partially initialized module" (seen once with ``ray.train``)."""
    if _State.early is not None:
        return
    import ray  # noqa: F401  (here, not on the thread: Ray's own imports, and numpy's, protobuf's, done once)

    _register_fork_handlers_first()

    def keep_alive() -> None:
        try:
            start()
        except BaseException as exc:  # re-raised by wait_started, in the sweep's own thread
            _State.error = exc
        finally:
            _State.ready.set()
        threading.Event().wait()  # never returns: Ray's GCS and raylet die with the thread that forked them

    _State.early = threading.Thread(target=keep_alive, name="ktsweep-ray-start", daemon=True)
    _State.early.start()


def _register_fork_handlers_first() -> None:
    """Import now what Keras' import would register ``os.register_at_fork`` handlers from.

    Ray forks its GCS and raylet from the start thread while this thread imports Keras. h5py's
    handlers take a lock before a fork and release it after; registered between the two, the release
    fails and prints "Exception ignored ... cannot release un-acquired lock" with a traceback into the
    command's output (seen in CI)."""
    try:
        import h5py  # noqa: F401  (Keras imports it anyway)
    except ImportError:
        pass


def started_early() -> bool:
    return _State.early is not None


def owns_ray() -> bool:
    return _State.owned


def wait_started() -> None:
    """Block until the early start is done; raise what it raised."""
    _State.ready.wait()
    if _State.error is not None:
        raise _State.error


def use_prestarted_workers() -> None:
    """Register Tune's trial actor classes without a runtime_env while this process owns a local Ray.

    Ray gives an actor only to a worker whose runtime_env matches, and prestarted workers have none.
    Locally the workers inherit this process's environment, which already holds what Tune's
    runtime_env sets (``PL_DISABLE_FORK`` and the variables Tune propagates from here).
    ``tests/test_warm_workers.py`` checks that trials land in the prestarted workers."""
    from ray.tune.execution import class_cache

    cache = class_cache._ActorClassCache
    if getattr(cache.get, "ktsweep_patched", False):
        return
    tune_get = cache.get

    def get(self: Any, trainable_cls: Any) -> Any:
        if not _State.owned:
            return tune_get(self, trainable_cls)
        import ray

        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    get.ktsweep_patched = True  # type: ignore[attr-defined]
    cache.get = get


def shut_down_early(*, more_ray_work: bool) -> None:
    """When this command started Ray and needs it no more, shut it down while the sweep closes."""
    if not (_State.owned and started_early()) or more_ray_work or _State.stopping is not None:
        return
    import ray

    _State.stopping = threading.Thread(target=ray.shutdown, name="ktsweep-ray-shutdown", daemon=True)
    _State.stopping.start()


def leave(code: Any) -> None:
    """End a command that started its own Ray: Ray down, output flushed, then ``os._exit``.

    Returns (and lets Python exit normally) when this process did not start Ray."""
    if not started_early():
        return
    _State.ready.wait()  # a start still under way would leave Ray's agents behind
    if not _State.owned:
        return
    if _State.stopping is None:
        shut_down_early(more_ray_work=False)
    assert _State.stopping is not None
    _State.stopping.join(timeout=SHUTDOWN_WAIT_SECONDS)
    if _State.stopping.is_alive():  # its GCS and raylet still end with this process (PR_SET_PDEATHSIG)
        print(f"ktsweep: Ray did not shut down within {SHUTDOWN_WAIT_SECONDS} s; leaving anyway", file=sys.stderr)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _finish_threads()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


def _finish_threads() -> None:
    """What Python's own exit does before its atexit handlers, which ``os._exit`` skips.

    Thread pools are told to stop first: MLflow's local artifact repository keeps an idle pool
    worker that only this stops (joining it alone hung the command whenever the pool was still
    referenced). Then threads still working (an MLflow store being created, ...) are waited for."""
    shutdown = getattr(threading, "_shutdown", None)  # CPython 3.11-3.13: Py_Finalize's own first step
    if shutdown is not None:
        shutdown()
        return
    for thread in threading.enumerate():
        if not thread.daemon and thread is not threading.current_thread():
            thread.join()
