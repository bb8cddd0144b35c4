"""Ctrl-C after the first one, while an interrupted sweep closes.

The first Ctrl-C stops the trials (a KeyboardInterrupt out of Ray Tune), and closing
the sweep then waits for the tracking writer to send what it has queued, which
takes as long as MLflow takes. The second Ctrl-C ends that wait: the queue goes to
the sweep's journal (the one an outage uses) and the sweep is closed as killed.
The third exits at once, with one line saying what was kept where: the CLI ends its
process; the Python API raises KeyboardInterrupt with that line as its note, since its
process is often a notebook's kernel, which must live on.

The handler only sets an event, exits or raises: it never takes a lock or writes a file,
so it cannot deadlock the main thread it interrupts. The one thing it must not cut
short, the queue's move to the journal, calls it back when done (``after_keep``).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from ktsweep.tracking.writer import TrackingWriter

EXIT_CODE = 130  # what a shell reports for a program ended by SIGINT


def say(line: str) -> None:
    """One line on stderr, written as a single call (safe inside a signal handler)."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), f"ktsweep: {line}\n".encode())


@contextlib.contextmanager
def closing_after_ctrl_c(writer: "TrackingWriter", *, sweep_dir: str, end_process: bool) -> Iterator[None]:
    """While the interrupted sweep closes: the second Ctrl-C keeps the queue, the third stops at
    once (``end_process``: by ending the process, else by a KeyboardInterrupt out of closing)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    sweep = os.path.basename(sweep_dir)
    exit_requested = False

    def exit_now() -> None:
        kept = len(writer.journal.pending())
        records = (f"{kept} trial records not yet in MLflow are kept in {writer.journal.path} "
                   f"(`ktsweep sync {sweep}` sends them); " if kept else "")
        line = (f"stopped at once; {records}the search state is in {os.path.join(sweep_dir, 'oracle')} "
                f"(`ktsweep resume {sweep}` continues)")
        if end_process:
            say(line)
            os._exit(EXIT_CODE)
        stopped = KeyboardInterrupt()
        stopped.add_note(f"ktsweep: {line}")
        raise stopped

    def after_keep() -> None:  # on the writer's thread, once the queue is in the journal
        if exit_requested:
            if end_process:
                exit_now()
            else:
                _thread.interrupt_main()  # the handler again, in the main thread: nothing held now

    def handle(signum: int, frame: Any) -> None:
        nonlocal exit_requested
        if not writer.stop_waiting.is_set():  # the second Ctrl-C
            writer.stop_waiting.set()
            say(f"interrupted again: what is still queued for MLflow goes to {writer.journal.path}; "
                "Ctrl-C once more exits at once")
        elif writer.holds_nothing():  # the third, nothing left only in memory
            exit_now()
        else:  # the third, while the queue is on its way to the journal: exit right after
            exit_requested = True

    writer.after_keep = after_keep
    previous = signal.signal(signal.SIGINT, handle)
    queued = writer.queued()
    if queued:
        say(f"interrupted: sending {queued} queued trial records to MLflow before closing the sweep "
            f"(Ctrl-C again keeps them in {writer.journal.path} instead)")
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        writer.after_keep = None
