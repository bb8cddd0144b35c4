"""Small Ray Tune plug-ins that connect Ray's trial events to the oracle searcher."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from ktsweep.search.oracle_searcher import OracleSearcher


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
