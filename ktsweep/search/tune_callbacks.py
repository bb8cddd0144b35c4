"""Small Ray Tune plug-ins that connect Ray's trial events to the oracle searcher."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DONE, TRIAL_ID
from ray.tune.stopper import Stopper

from ktsweep.execution.trial_result import IN_THE_OPEN
from ktsweep.search.searcher import OracleSearcher


class CheckpointRecorder(Callback):
    """Tells the searcher where each trial's model landed in Ray storage (for Hyperband hand-off)."""

    def __init__(self, searcher: OracleSearcher) -> None:
        self.searcher = searcher

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self.searcher.record_checkpoint(trial.config["kt_trial_id"], checkpoint_uri(checkpoint))


def checkpoint_uri(checkpoint: Any) -> str:
    """A checkpoint's location that any node can open: a local path, or s3:// / gs:// for remote storage."""
    kind = getattr(checkpoint.filesystem, "type_name", "local")
    if kind == "local":
        return checkpoint.path
    return f"{ {'gcs': 'gs'}.get(kind, kind)}://{checkpoint.path}"


class FatalStop(Stopper):
    """Stops the whole sweep once the searcher has seen a fatal error."""

    def __init__(self, searcher: OracleSearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.fatal_error is not None


class SlimFinishedTrials(Callback):
    """Drops what Ray Tune keeps of a finished trial that nothing reads again.

    Tune holds every trial until the sweep ends, with its last result (the trial's config and
    ktsweep's packed details, again in the result its checkpoint was registered with) and
    running statistics with last-5 and last-10 windows of every number it reported, and caches
    all of it as JSON for its experiment checkpoints: the driver's growth per trial over a long
    sweep (bench/RESULTS.md, section 8). Tune calls the scheduler and the searcher before any
    callback; this one comes after ktsweep's others (tracking, progress), which read the result.
    Tune's own progress callback, after it, reads only the trial's status and ``objective``."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        slim_finished(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        slim_finished(trial)  # Tune calls this on a trial's last failure only, not on a retried one


def slim_finished(trial: Any) -> None:
    """Keeps what Tune wrote itself and its statistics of the judged metric (which stay consistent,
    so a trial restored and continued would update them), and the checkpoints' paths."""
    run = trial.run_metadata
    run.last_result = _tunes_own(run.last_result)
    run.metric_analysis = {key: value for key, value in run.metric_analysis.items() if key == JUDGED}
    run.metric_n_steps = {key: value for key, value in run.metric_n_steps.items() if key == JUDGED}
    manager = run.checkpoint_manager
    if manager is not None:
        for checkpoint_result in {*manager.best_checkpoint_results, manager.latest_checkpoint_result} - {None}:
            checkpoint_result.metrics = _tunes_own(checkpoint_result.metrics)
    run.invalidate_cache()
    trial.invalidate_json_state()


def _tunes_own(result: dict) -> dict:
    """The keys Tune writes itself and the numbers it judges; the config it copied in is the trial's."""
    return {key: value for key, value in (result or {}).items() if key in _TUNES_OWN}


JUDGED = "objective"  # the metric Tune is told to judge (``make_tuner``'s ``TuneConfig``)
_TUNES_OWN = (set(AUTO_RESULT_KEYS) - {"config"}) | {DONE, TRIAL_ID} | IN_THE_OPEN
