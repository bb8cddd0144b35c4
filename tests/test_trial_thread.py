"""Every trial of a worker trains on one long-lived thread; Tune's stop and errors come back to its own."""

from __future__ import annotations

import sys
import threading

import pytest

from ktsweep.execution.trial_thread import TrialThread, trial_thread


def test_calls_from_new_threads_all_run_on_the_one_trial_thread() -> None:
    ran_on: list[int] = []

    def tune_runner_thread() -> None:  # what Ray Tune starts for each trial of a reused actor
        ran_on.append(trial_thread().run(threading.get_ident))

    for _ in range(3):
        runner = threading.Thread(target=tune_runner_thread)
        runner.start()
        runner.join()
    assert len(ran_on) == 3 and len(set(ran_on)) == 1
    assert ran_on[0] == trial_thread().thread.ident != threading.get_ident()


def test_tunes_stop_and_a_trials_error_reach_the_caller_and_the_thread_goes_on() -> None:
    worker = TrialThread()

    def stopped_inside_report() -> None:
        sys.exit(0)  # what Ray's session.report raises in the training thread when Tune stops the trial

    with pytest.raises(SystemExit):
        worker.run(stopped_inside_report)
    with pytest.raises(ValueError, match="bad trial"):
        worker.run(lambda: (_ for _ in ()).throw(ValueError("bad trial")))
    assert worker.run(lambda a, *, b: a + b, 2, b=3) == 5
    assert worker.thread.is_alive()
