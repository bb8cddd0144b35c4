"""``ktsweep`` with a fault injected into the driver, for tests that need one in a real sweep process.

Run as ``python tests/faulty_ktsweep.py ARGS...`` (the same arguments as ``ktsweep``); the
environment picks the fault:

- ``KTSWEEP_FAULT_KILL_AFTER_REGISTERING=PID``: right after the best model's version is
  created, SIGKILL the process group PID (an ``mlflow server``): MLflow is gone before the
  sweep can promote the version or mark itself published.
- ``KTSWEEP_FAULT_WRITER_STALLS_AFTER=N``: the tracking writer's thread gets N store writes
  through, then its writes never return (an MLflow that stopped answering without closing
  the connection).
- ``KTSWEEP_FAULT_STALL_FILE=PATH``: while PATH exists, store writes from any other thread
  (closing the sweep) stall too.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import urlparse

WRITER_THREAD = "ktsweep-mlflow-writer"
STORE_WRITES = ("create_run", "log_batch", "update_run_info", "set_tag")


def kill_server_after_registering(pid: int) -> None:
    from ktsweep.registry import promotion as registry

    register = registry.register_version

    def register_then_kill(client: Any, *args: Any, **kwargs: Any) -> Any:
        version = register(client, *args, **kwargs)
        os.killpg(pid, signal.SIGKILL)
        address = urlparse(client.tracking_uri)
        while True:  # gone when its port refuses connections
            try:
                socket.create_connection((address.hostname, address.port), timeout=1).close()
            except OSError:
                return version
            time.sleep(0.05)

    registry.register_version = register_then_kill


def stall_store_writes(writer_budget: int, stall_file: str) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    lock = threading.Lock()
    budget = [writer_budget]

    def stalled(method: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == WRITER_THREAD:
                with lock:
                    budget[0] -= 1
                    stall = budget[0] < 0
                if stall:
                    threading.Event().wait()  # never returns: the sweep must not wait for it
            else:
                while stall_file and os.path.exists(stall_file):
                    time.sleep(0.05)
            return method(self, *args, **kwargs)

        return write

    for name in STORE_WRITES:
        setattr(SqlAlchemyStore, name, stalled(getattr(SqlAlchemyStore, name)))


def main() -> None:
    if os.environ.get("KTSWEEP_FAULT_KILL_AFTER_REGISTERING"):
        kill_server_after_registering(int(os.environ["KTSWEEP_FAULT_KILL_AFTER_REGISTERING"]))
    if os.environ.get("KTSWEEP_FAULT_WRITER_STALLS_AFTER"):
        stall_store_writes(int(os.environ["KTSWEEP_FAULT_WRITER_STALLS_AFTER"]), os.environ.get("KTSWEEP_FAULT_STALL_FILE", ""))
    from ktsweep.cli.main import main as ktsweep

    ktsweep(sys.argv[1:])


if __name__ == "__main__":
    main()
