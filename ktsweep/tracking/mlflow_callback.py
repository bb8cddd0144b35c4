"""MLflow records, written by the driver only.

One parent run per sweep, one nested child run per oracle trial. Workers never
talk to MLflow: results stream back through Ray and this callback writes them,
batched. Child runs are found by their ``ktsweep.trial_id`` tag before any is
created, so resuming a sweep never records a trial twice. The writes go out on
a background thread (``ktsweep.tracking.writer``), so Ray Tune's loop never waits
on MLflow; if MLflow stops answering mid-sweep, the records go to the sweep's
journal (``ktsweep.tracking.journal``) and training goes on.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ray.tune import Callback

from ktsweep.execution.trial_result import ERROR_KEY, STOPPED_EARLY_KEY, unpack
from ktsweep.tracking.journal import Journal, Target, create_op, log_op, status_op
from ktsweep.tracking.records import (
    HP_METRIC,
    MAX_TAG,
    OBJECTIVE_METRIC,
    TAG_ERROR,
    TAG_FINAL_HP,
    TAG_PBT_DONOR,
    TAG_PBT_EXPLOITS,
    TAG_PBT_LINEAGE,
    TAG_STATUS,
    TAG_STOPPED_EARLY,
    json_tag,
)
from ktsweep.tracking.writer import TrackingWriter

if TYPE_CHECKING:
    import keras_tuner as kt
    from mlflow import MlflowClient

TAG_ATTEMPTS = "ktsweep.attempts"
BEST_SO_FAR = "best_objective_so_far"  # on the sweep's run, step = trials finished: the search converging
FINISHED_STATES = ("COMPLETED", "FAILED", "INVALID")  # Keras Tuner's trial states that end a trial
FLUSH_SECONDS = 10.0  # per-epoch metrics are sent in batches at most this often per trial


def flat_params(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in sorted(values.items())}


class MlflowTracking(Callback):
    """Ray Tune callback: a child run per oracle trial, per-epoch metrics with ``step=epoch``.

    Writes are journal operations (``ktsweep.tracking.journal``), queued to the writer thread:
    applied while MLflow answers, kept in the sweep folder while it does not, and
    replayed when it is back.
    """

    def __init__(
        self,
        client: "MlflowClient",
        *,
        experiment_id: str,
        parent_run_id: str,
        sweep: str,
        oracle: "kt.Oracle",
        sweep_dir: str,
        best_score: Optional[float] = None,
        dataset: Optional[dict[str, Any]] = None,
        objectives: tuple[str, ...] = (),
    ) -> None:
        target = Target(experiment_id, parent_run_id, sweep)
        target.load_runs(client)
        self.writer = TrackingWriter(client, target, Journal(sweep_dir))
        self.oracle = oracle
        self.dataset = dataset  # the sweep's dataset input (ktsweep.tracking.dataset_input), on every trial's run
        self.objectives = objectives  # sweep.objectives' names: each completed trial's values, as objective/<name>
        self._pending: dict[str, list[tuple[str, float, int, int]]] = {}
        self._last_flush: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.attempts: dict[str, int] = {}  # oracle trial id -> starts seen by this driver
        self._resumed: set[str] = set()  # trials whose running attempt continued from their own checkpoint
        self._params: dict[str, dict[str, str]] = {}  # oracle trial id -> the params its run was created with
        self.seconds_waiting = 0.0  # time the sweep's event loop spent on tracking (bench reads it)
        # The finished trials and the best objective so far, kept up to date trial by trial (recounting the
        # oracle's trials after each one is quadratic over a long sweep); from the oracle, so a resumed
        # sweep goes on from where it stopped.
        self._finished = {t.trial_id for t in oracle.trials.values() if t.status in FINISHED_STATES}
        self._best = best_score  # the best completed trial's score when the sweep (re)started

    @property
    def runs(self) -> dict[str, str]:
        return self.writer.target.runs

    # -- Ray Tune callback hooks -----------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        kt_id = trial.config["kt_trial_id"]
        self._started[trial.trial_id] = self._last_flush[trial.trial_id] = time.time()
        values = self.oracle.trials[kt_id].hyperparameters.values
        self.attempts[kt_id] = self.attempts.get(kt_id, 0) + 1
        self._resumed.discard(kt_id)
        tags = {"ray.trial_id": trial.trial_id, TAG_ATTEMPTS: str(self.attempts[kt_id])}
        self._params[kt_id] = flat_params(values)
        self._send(create_op(kt_id, self._params[kt_id], tags, dataset=self.dataset))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray will restart this trial (its worker died): say so on the run before it starts again."""
        error = str(trial.error_file or "worker died")
        self._flush(trial)  # the dead attempt's epochs go out first: a resumed attempt's are checked against them
        self._send(log_op(trial.config["kt_trial_id"], tags={"ktsweep.last_worker_error": error}))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        result = unpack(result)
        if result.get("kind") == "history":  # resumed from its own checkpoint: the epochs it had done, again
            self._resumed.add(trial.config["kt_trial_id"])
            epochs = result.get("history") or []
        elif result.get("kind") == "epoch":
            epochs = [(result["epoch"], _nested(result, "metrics"))]
        elif result.get("kind") == "exploit":
            self._record_exploit(trial, _nested(result, "pbt").get("lineage") or [])
            return
        else:
            return
        now = int(time.time() * 1000)
        self._pending.setdefault(trial.trial_id, []).extend(
            (key, float(value), now, int(step)) for step, metrics in epochs for key, value in metrics.items()
        )
        if time.time() - self._last_flush.get(trial.trial_id, 0.0) > FLUSH_SECONDS:
            self._flush(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, unpack(trial.last_result or {}))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = dict(unpack(trial.last_result or {}))
        result.setdefault(ERROR_KEY, f"worker failed: {trial.error_file or 'see Ray logs'}")
        self._finish(trial, result)

    # -- internals -------------------------------------------------------

    def _finish(self, trial: Any, result: dict[str, Any]) -> None:
        kt_id = trial.config["kt_trial_id"]
        points = self._pending.pop(trial.trial_id, [])  # the last epochs go out with the final metrics
        oracle_trial = self.oracle.trials[kt_id]
        status = oracle_trial.status  # the searcher has already given the oracle its verdict
        tags = {TAG_STATUS: status, **{f"ktsweep.worker.{k}": str(v) for k, v in _nested(result, "worker").items()}}
        message = oracle_trial.message or result.get(ERROR_KEY)
        if message and status != "COMPLETED":
            tags[TAG_ERROR] = str(message)[:5000]
        if result.get(STOPPED_EARLY_KEY) is not None:
            tags[TAG_STOPPED_EARLY] = str(result[STOPPED_EARLY_KEY])
        now = int(time.time() * 1000)
        self._last_flush.pop(trial.trial_id, None)
        metrics = [*points, ("trial_seconds", time.time() - self._started.pop(trial.trial_id, time.time()), now, 0)]
        metrics += [(f"worker_{phase}_seconds", float(s), now, 0) for phase, s in _nested(result, "phases").items()]
        if status == "COMPLETED" and oracle_trial.score is not None:
            metrics.append(("objective", float(oracle_trial.score), now, int(oracle_trial.best_step or 0)))
            metrics.append(("best_epoch", float(oracle_trial.best_step or 0), now, 0))
            metrics += [(f"{OBJECTIVE_METRIC}{name}", float(oracle_trial.metrics.get_last_value(name)), now, 0)
                        for name in self.objectives if oracle_trial.metrics.exists(name)]
        # Hyperparameters that the HyperModel's fit() declared exist only now (Keras Tuner semantics). A param
        # keeps its first value (MLflow refuses another): values that PBT changed go in tags.
        first = self._params.pop(kt_id, {})
        params = {}
        for key, value in flat_params(oracle_trial.hyperparameters.values).items():
            if first.get(key, value) == value:
                params[key] = value
            else:
                tags[f"{TAG_FINAL_HP}{key}"] = value
        self._send(self._log_op(kt_id, metrics=metrics, tags=tags, params=params))
        if status != "RUNNING":
            self._send(status_op(kt_id, "FINISHED" if status == "COMPLETED" else "FAILED"))
            self._log_best_so_far(oracle_trial, now)

    def _record_exploit(self, trial: Any, lineage: list[dict[str, Any]]) -> None:
        """A PBT exploit, on the trial's run: the lineage so far (the worker keeps it, so a resumed trial's
        is whole), the last donor, and each perturbed number as ``hp/<name>`` at the epoch it took effect."""
        if not lineage:
            return
        kt_id, last, now = trial.config["kt_trial_id"], lineage[-1], int(time.time() * 1000)
        self._flush(trial)
        done = [entry for entry in lineage if "skipped" not in entry]
        tags = {TAG_PBT_EXPLOITS: str(len(done)), TAG_PBT_LINEAGE: lineage_tag(lineage)}
        if done:
            tags[TAG_PBT_DONOR] = str(done[-1]["donor"])
        metrics = []
        for name, (old, new) in (last.get("hp") or {}).items():
            if _number(old) and len(done) == 1:
                metrics.append((f"{HP_METRIC}{name}", float(old), now, 0))
            if _number(new):
                metrics.append((f"{HP_METRIC}{name}", float(new), now, int(last["epoch"]) + 1))
        self._send(self._log_op(kt_id, metrics=metrics, tags=tags))

    def _log_best_so_far(self, trial: "kt.engine.trial.Trial", now: int) -> None:
        """The best objective after each finished trial, on the sweep's run (step: trials finished)."""
        self._finished.add(trial.trial_id)
        score = trial.score
        if trial.status == "COMPLETED" and score is not None and (
            self._best is None or self.oracle.objective.better_than(score, self._best)
        ):
            self._best = float(score)
        if self._best is not None:
            self._send(log_op(None, metrics=[(BEST_SO_FAR, self._best, now, len(self._finished))]))

    def _flush(self, trial: Any) -> None:
        points = self._pending.pop(trial.trial_id, [])
        self._last_flush[trial.trial_id] = time.time()
        if points:
            self._send(self._log_op(trial.config["kt_trial_id"], metrics=points))

    def _log_op(self, kt_id: str, **kwargs: Any) -> dict[str, Any]:
        """A resumed attempt re-sends epochs an earlier attempt (or driver) may have written: MLflow keeps
        each epoch once (``new_steps_only``: the writer skips steps it already holds)."""
        op = log_op(kt_id, **kwargs)
        if kt_id in self._resumed:
            op["new_steps_only"] = True
        return op

    def _send(self, op: dict[str, Any]) -> None:
        with self._timed():
            self.writer.send(op)

    def close(self) -> Optional[str]:
        """At the end of the sweep: wait for the writer; a one-line notice if records stay in the journal."""
        with self._timed():
            return self.writer.close()

    @property
    def seconds_writing(self) -> float:
        """Time in MLflow calls (on the writer thread, in parallel with the sweep)."""
        return self.writer.seconds_writing

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds_waiting += time.perf_counter() - start


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lineage_tag(lineage: list[dict[str, Any]]) -> str:
    """The lineage as one tag value (MLflow keeps up to 8,000 characters): the oldest entries go first."""
    text = json_tag(lineage, keep="last")
    if len(text) > MAX_TAG:  # one exploit alone is too long (many copied values): its essentials, still JSON
        text = json.dumps([{k: v for k, v in lineage[-1].items() if k in ("epoch", "donor", "donor_epoch", "skipped")}])
    return text


def _nested(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Ray may hand callbacks nested or flattened (``metrics/x``) results; accept both."""
    if isinstance(result.get(prefix), dict):
        return result[prefix]
    marker = prefix + "/"
    return {key[len(marker):]: value for key, value in result.items() if key.startswith(marker)}
