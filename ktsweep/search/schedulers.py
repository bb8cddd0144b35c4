"""Early stopping of weak trials for every strategy: Ray Tune's schedulers, judging epochs.

A Ray Tune scheduler sees every result a trial reports. Ours report one ``epoch`` result per
epoch, then a ``final`` one (best epoch, saved model) and, after resuming from a checkpoint,
a ``history`` one: the schedulers here judge ``epoch`` results only, on the number of epochs
done (``EPOCHS_DONE``, absolute, so a resumed trial keeps its place in the rungs).

A STOP decision is not passed to Ray as it is: Ray would end the trial's thread inside
``tune.report`` (``sys.exit`` in the training thread), and the trial would never report its
best epoch nor save its model. The decision goes to the trial instead (``request_stop``:
a file in its folder) and Ray is told to continue. Ray resumes a trial's ``report`` only after
the scheduler has decided, so the trial reads the request right after that epoch, ends
``fit``, and reports like any finished trial, with ``stopped_early_at``.
"""

from __future__ import annotations

from typing import Any, Optional

from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule, TrialScheduler

from ktsweep.execution.trial_checkpoint import request_stop
from ktsweep.execution.trial_result import IN_THE_OPEN

EPOCHS_DONE = "epochs_done"


class _JudgesEpochs:
    """Mixed into a Ray scheduler: judge epoch results only; a STOP becomes the trial's own stop."""

    def __init__(self, trials_root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.trials_root = trials_root
        self.asked_to_stop: set[str] = set()  # Ray trial ids (a retried trial may report again before it stops)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("kind") != "epoch" or trial.trial_id in self.asked_to_stop:
            return TrialScheduler.CONTINUE
        # Only the numbers it judges: the median rule keeps every judged result to the sweep's end.
        judged = {**{key: result[key] for key in IN_THE_OPEN if key in result}, EPOCHS_DONE: int(result["epoch"]) + 1}
        decision = super().on_trial_result(tune_controller, trial, judged)  # type: ignore[misc]
        if decision == TrialScheduler.STOP:
            request_stop(self.trials_root, trial.config["kt_trial_id"], int(result["epoch"]))
            self.asked_to_stop.add(trial.trial_id)
        # Never PAUSE either (the median rule yields to waiting trials when it lacks samples):
        # a paused function trial would start over.
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """The last result is the trial's ``final`` one, not an epoch: every epoch was judged already."""


class EpochASHA(_JudgesEpochs, ASHAScheduler):
    pass


class EpochMedianStoppingRule(_JudgesEpochs, MedianStoppingRule):
    pass


def make_scheduler(conf: Any, *, trials_root: str) -> Optional[TrialScheduler]:
    """The configured scheduler (``scheduler=asha|median``), or None. Metric and mode come from TuneConfig."""
    if conf.kind == "asha":
        return EpochASHA(
            trials_root, time_attr=EPOCHS_DONE, max_t=conf.max_t, grace_period=conf.grace_period,
            reduction_factor=conf.reduction_factor, brackets=conf.brackets,
            stop_last_trials=False,  # a trial at its last epoch finishes by itself, with its final report
        )
    if conf.kind == "median":
        return EpochMedianStoppingRule(
            trials_root, time_attr=EPOCHS_DONE, grace_period=conf.grace_period,
            min_samples_required=conf.min_samples_required,
        )
    return None
