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

Population Based Training (``EpochPBT``) works the same way: Ray's own ``PopulationBasedTraining``
refuses any Searcher (ours asks Keras Tuner's oracle), pauses trials to exploit (a paused function
trial starts over here) and copies the donor's whole config, identity included. Here the decision
is an exploit request in the weak trial's folder; the trial carries it out itself, in its worker
(``execution/pbt.py``), and Ray sees one trial that runs to its end.
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from ktsweep.execution.trial_checkpoint import request_exploit, request_stop
from ktsweep.execution.trial_result import IN_THE_OPEN, unpack

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


class EpochPBT(FIFOScheduler):
    """Asynchronous Population Based Training on epoch results: Ray Tune's quantile rule, decided here,
    carried out by the trial (``execution/pbt.py``). Never PAUSE, never STOP, never touches a config.

    At each ``interval`` epochs (after ``burn_in``) a trial's score is recorded; among the running
    trials with a score, the bottom ``quantile_fraction`` (at most half) is lower, the top is upper,
    as in Ray's ``PopulationBasedTraining._quantiles``. A lower trial is told to copy a random upper
    one's state at that trial's last recorded epoch. Rebuilt on resume from each trial's ``history``.
    """

    def __init__(
        self, trials_root: str, *, interval: int, burn_in: int, quantile_fraction: float,
        resample_probability: float, mutable: Optional[list[str]], fixed: list[str], epochs: int,
        objective: str, mode: str, seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.trials_root, self.interval, self.epochs = trials_root, interval, epochs
        self.first = max(interval, math.ceil(burn_in / interval) * interval)  # epochs done at the first exploit
        self.quantile_fraction, self.resample_probability = quantile_fraction, resample_probability
        self.mutable, self.fixed, self.objective = mutable, fixed, objective
        self.sign = 1.0 if mode == "max" else -1.0
        self.rng = random.Random(seed)
        self.scores: dict[str, tuple[float, int, str]] = {}  # Ray id -> (signed score, epoch, oracle id)
        self.exploits: list[dict[str, Any]] = []  # every request written (tests, bench)
        self.copied_at: dict[str, int] = {}  # Ray id -> the epoch at which it was last told to copy another

    def _judged_epoch(self, epochs_done: int) -> bool:
        return epochs_done >= self.first and epochs_done % self.interval == 0 and epochs_done < self.epochs

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        kind = result.get("kind")
        if kind == "history":  # a resumed trial: its score at its last perturbation epoch
            self.copied_at.pop(trial.trial_id, None)
            resumed = unpack(result)
            history = resumed.get("history") or []
            if resumed.get("copied_at") is not None:  # its pin there is the copy an exploit made
                self.copied_at[trial.trial_id] = int(resumed["copied_at"])
            judged = [(int(e), logs) for e, logs in history if self._judged_epoch(int(e) + 1) and self.objective in logs]
            if judged:
                epoch, logs = judged[-1]
                score = float(logs[self.objective])
                self.scores[trial.trial_id] = (self.sign * score if math.isfinite(score) else -math.inf, epoch,
                                               trial.config["kt_trial_id"])
            return TrialScheduler.CONTINUE
        if kind != "epoch" or not self._judged_epoch(int(result["epoch"]) + 1):
            return TrialScheduler.CONTINUE
        epoch, score = int(result["epoch"]), float(result["objective"])
        kt_id = trial.config["kt_trial_id"]
        self.scores[trial.trial_id] = (self.sign * score if math.isfinite(score) else -math.inf, epoch, kt_id)
        # The score on record is its own state's until it is told to copy (a retried trial judges anew;
        # the epochs between judged ones change nothing: its pin at the judged epoch stays a copy).
        self.copied_at.pop(trial.trial_id, None)
        lower, upper = self._quantiles()
        if trial.trial_id in lower and upper:
            # A trial told to copy another at its last judged epoch holds no state of its own there (its
            # pin is the copy, written once its exploit is done): copy from the others while there are any.
            own_state = [ray_id for ray_id in upper if self.copied_at.get(ray_id) != self.scores[ray_id][1]]
            donor_score, donor_epoch, donor = self.scores[self.rng.choice(own_state or upper)]
            request = {
                "epoch": epoch, "donor": donor, "donor_epoch": donor_epoch, "mutable": self.mutable,
                "fixed": self.fixed, "resample_probability": self.resample_probability,
                "seed": self.rng.randrange(2**31), "score": score, "donor_score": self.sign * donor_score,
            }
            request_exploit(self.trials_root, kt_id, request)
            self.copied_at[trial.trial_id] = epoch
            self.exploits.append({"trial": kt_id, **request})
        return TrialScheduler.CONTINUE

    def _quantiles(self) -> tuple[list[str], list[str]]:
        """Ray Tune's rule: ``ceil(n * fraction)`` trials at each end, at most half of them."""
        ranked = sorted(self.scores, key=lambda ray_id: self.scores[ray_id][0])
        count = min(math.ceil(len(ranked) * self.quantile_fraction), len(ranked) // 2)
        return (ranked[:count], ranked[-count:]) if count else ([], [])

    def _leave(self, trial: Any) -> None:
        self.scores.pop(trial.trial_id, None)  # a finished trial's state is gone: no longer a donor
        self.copied_at.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._leave(trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._leave(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._leave(trial)


def make_scheduler(
    conf: Any, *, trials_root: str, objective: str = "objective", mode: str = "max", fixed: Optional[list[str]] = None,
    seed: Optional[int] = None,
) -> Optional[TrialScheduler]:
    """The configured scheduler (``scheduler=asha|median|pbt``), or None. ASHA's and the median rule's
    metric and mode come from TuneConfig; PBT's from the sweep (``fixed``: the names ``build()``
    declares, which PBT copies and never perturbs unless they are a learning rate)."""
    if conf.kind == "pbt":
        return EpochPBT(
            trials_root, interval=conf.perturbation_interval, burn_in=conf.burn_in,
            quantile_fraction=conf.quantile_fraction, resample_probability=conf.resample_probability,
            mutable=list(conf.mutable) if conf.mutable is not None else None, fixed=list(fixed or []),
            epochs=conf.epochs, objective=objective, mode=mode, seed=seed,
        )
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
