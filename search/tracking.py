"""MLflow records, written by the driver only.

One parent run per sweep, one nested child run per oracle trial. Workers never
talk to MLflow: results stream back through Ray and this callback writes them,
batched. Child runs are found by their ``ktsweep.trial_id`` tag before any is
created, so resuming a sweep never records a trial twice.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, Iterator

from ray.tune import Callback

from search.oracle_searcher import ERROR_KEY, STATUS_KEY
from search.records import TAG_ERROR, TAG_KIND, TAG_PARENT, TAG_STATUS, TAG_SWEEP, TAG_TRIAL, find_runs

if TYPE_CHECKING:
    import keras_tuner as kt
    from mlflow import MlflowClient

TAG_ATTEMPTS = "ktsweep.attempts"
FLUSH_SECONDS = 10.0  # per-epoch metrics are sent in batches at most this often per trial


def flat_params(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in sorted(values.items())}


class MlflowTracking(Callback):
    """Ray Tune callback: a child run per oracle trial, per-epoch metrics with ``step=epoch``."""

    def __init__(
        self,
        client: "MlflowClient",
        *,
        experiment_id: str,
        parent_run_id: str,
        sweep: str,
        oracle: "kt.Oracle",
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep = sweep
        self.oracle = oracle
        self.runs = {
            run.data.tags[TAG_TRIAL]: run.info.run_id
            for run in find_runs(client, experiment_id, sweep=sweep, kind="trial")
        }
        self._pending: dict[str, list[Any]] = {}
        self._last_flush: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.attempts: dict[str, int] = {}  # oracle trial id -> starts seen by this driver
        self.seconds_writing = 0.0  # time spent in MLflow calls (bench reads it)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment state; the client is rebuilt from its URI.
        state = dict(self.__dict__)
        state["client"] = self.client.tracking_uri
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        self.__dict__.update(state)
        self.client = MlflowClient(state["client"])

    # -- Ray Tune callback hooks -----------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        kt_id = trial.config["kt_trial_id"]
        self._started[trial.trial_id] = time.time()
        values = self.oracle.trials[kt_id].hyperparameters.values
        with self._timed():
            run_id = self.runs.get(kt_id)
            if run_id is None:
                run = self.client.create_run(
                    self.experiment_id,
                    run_name=f"trial_{kt_id}",
                    tags={TAG_PARENT: self.parent_run_id, TAG_KIND: "trial", TAG_SWEEP: self.sweep, TAG_TRIAL: kt_id},
                )
                run_id = self.runs[kt_id] = run.info.run_id
                self.client.log_batch(run_id, params=[_param(k, v) for k, v in flat_params(values).items()])
            else:  # a retry of the same oracle trial: same run, marked as running again
                self.client.update_run(run_id, status="RUNNING")
            self.attempts[kt_id] = self.attempts.get(kt_id, 0) + 1
            self.client.set_tag(run_id, "ray.trial_id", trial.trial_id)
            self.client.set_tag(run_id, TAG_ATTEMPTS, str(self.attempts[kt_id]))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray will restart this trial (its worker died): say so on the run before it starts again."""
        run_id = self.runs.get(trial.config["kt_trial_id"])
        if run_id is not None:
            with self._timed():
                self.client.set_tag(run_id, "ktsweep.last_worker_error", str(trial.error_file or "worker died"))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("kind") != "epoch":
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(result["epoch"])
        metrics = _nested(result, "metrics")
        self._pending.setdefault(trial.trial_id, []).extend(
            Metric(key, float(value), now, step) for key, value in metrics.items()
        )
        if time.time() - self._last_flush.get(trial.trial_id, 0.0) > FLUSH_SECONDS:
            self._flush(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, trial.last_result or {})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = dict(trial.last_result or {})
        result.setdefault(ERROR_KEY, f"worker failed: {trial.error_file or 'see Ray logs'}")
        self._finish(trial, result, crashed=True)

    # -- internals -------------------------------------------------------

    def _finish(self, trial: Any, result: dict[str, Any], crashed: bool = False) -> None:
        kt_id = trial.config["kt_trial_id"]
        run_id = self.runs.get(kt_id)
        if run_id is None:
            return
        self._flush(trial)
        oracle_trial = self.oracle.trials[kt_id]
        status = oracle_trial.status  # the searcher has already given the oracle its verdict
        tags = {TAG_STATUS: status, **{f"ktsweep.worker.{k}": str(v) for k, v in _nested(result, "worker").items()}}
        message = oracle_trial.message or result.get(ERROR_KEY)
        if message and status != "COMPLETED":
            tags[TAG_ERROR] = str(message)[:5000]
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric("trial_seconds", time.time() - self._started.get(trial.trial_id, time.time()), now, 0)]
        if status == "COMPLETED" and oracle_trial.score is not None:
            metrics.append(Metric("objective", float(oracle_trial.score), now, int(oracle_trial.best_step or 0)))
            metrics.append(Metric("best_epoch", float(oracle_trial.best_step or 0), now, 0))
        with self._timed():
            self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
            mlflow_status = "FINISHED" if status == "COMPLETED" else ("RUNNING" if status == "RUNNING" else "FAILED")
            if mlflow_status != "RUNNING":
                self.client.set_terminated(run_id, status=mlflow_status)

    def _flush(self, trial: Any) -> None:
        metrics = self._pending.pop(trial.trial_id, [])
        self._last_flush[trial.trial_id] = time.time()
        kt_id = trial.config["kt_trial_id"]
        if metrics and kt_id in self.runs:
            with self._timed():
                for start in range(0, len(metrics), 1000):  # MLflow's batch limit
                    self.client.log_batch(self.runs[kt_id], metrics=metrics[start : start + 1000])

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds_writing += time.perf_counter() - start


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value[:6000])


def _nested(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Ray may hand callbacks nested or flattened (``metrics/x``) results; accept both."""
    if isinstance(result.get(prefix), dict):
        return result[prefix]
    marker = prefix + "/"
    return {key[len(marker):]: value for key, value in result.items() if key.startswith(marker)}
