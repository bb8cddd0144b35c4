"""Where a sweep's records live in MLflow: the tags that name them and how to find them.

Kept free of Ray and TensorFlow imports: ``ktsweep list`` and ``show`` use it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Iterator

from ktsweep.core.errors import UsageError

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_KIND = "ktsweep.kind"  # "sweep" | "trial"
TAG_SWEEP = "ktsweep.sweep"
TAG_TRIAL = "ktsweep.trial_id"
TAG_STATUS = "ktsweep.status"
TAG_ERROR = "ktsweep.error"
TAG_STRATEGY = "ktsweep.strategy"
TAG_OBJECTIVE = "ktsweep.objective"
TAG_DIRECTION = "ktsweep.direction"
TAG_STOPPED_EARLY = "ktsweep.stopped_early_at"  # on a trial: the epoch after which the scheduler stopped it
TAG_PBT_EXPLOITS = "ktsweep.pbt.exploits"  # on a trial: how many times PBT made it copy a stronger trial
TAG_PBT_DONOR = "ktsweep.pbt.last_donor"
TAG_PBT_LINEAGE = "ktsweep.pbt.lineage"  # JSON: each exploit's epoch, donor, its epoch, the values before and after
TAG_FINAL_HP = "ktsweep.final_hp."  # + name: a hyperparameter's value at the trial's end, where PBT changed it
OBJECTIVE_METRIC = "objective/"  # + name: a trial's value of each of sweep.objectives, at its best epoch
TAG_OBJECTIVES = "ktsweep.objectives"  # on the sweep: "name:direction,..." when it has several objectives
TAG_SELECT = "ktsweep.select"  # the rule that picked the published trial
TAG_PARETO_FRONT = "ktsweep.pareto_front"  # JSON: the trial ids on the front
HP_METRIC = "hp/"  # + name: a perturbed hyperparameter's value from that step on (PBT)
MAX_TAG = 8000  # MLflow's limit on a tag's value

TAG_PARENT = "mlflow.parentRunId"
TAG_CHAMPION = "ktsweep.champion"  # "true" on the parent run of the sweep whose model holds the champion alias
TAG_NOTE = "mlflow.note.content"  # a run's description in the MLflow UI (markdown)
# MLflow's experiment kind: "custom_model_development" is the UI's "Model training" kind (the value its own
# kind selector writes, mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT), as opposed to GenAI.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# How long one request to an MLflow server may take. No retries: a server that is down refuses
# at once and the sweep says so (or journals), and a create is never sent twice. But a server
# that several sweeps share can be slow to answer (measured: over 10 s while 4 sweeps started
# on a loaded 2-core machine), and a slow answer is not an outage.
HTTP_TIMEOUT_SECONDS = 60


def json_tag(items: list[Any], *, keep: str = "first") -> str:
    """``items`` as JSON within MLflow's tag limit, still valid JSON: the ``keep="first"`` ones that
    fit, or the ``"last"`` ones (a history, whose newest entries matter most); at least one item."""
    import json

    if keep not in ("first", "last"):
        raise ValueError(f"keep={keep!r}; use 'first' or 'last'")
    items = list(items)
    while len(text := json.dumps(items, default=str)) > MAX_TAG and len(items) > 1:
        items = items[:-1] if keep == "first" else items[1:]
    return text


def trial_run_name(sweep: str, trial_id: str) -> str:
    """A child run's name: the sweep's name first, so runs of several sweeps read apart in one table."""
    return f"{sweep} / trial {trial_id}"


def local_uri(root: str) -> str:
    return f"sqlite:///{os.path.abspath(os.path.join(root, 'mlflow.db'))}"


def connect(uri: str, experiment: str, *, root: str) -> tuple["MlflowClient", str]:
    """Open the tracking store and the experiment; fail with one line if it cannot be reached."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_SECONDS))
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(uri):
            path = sqlite_path(uri)
            if path is not None:
                from ktsweep.tracking.store_template import seed_new_store

                seed_new_store(path)
            return _open_experiment(uri, experiment, root)
    except Exception as exc:  # connection errors come from requests, sqlalchemy, ...
        detail = " ".join(str(exc).split())[:200]
        raise UsageError(
            f"cannot reach the MLflow tracking store at {uri} ({detail}); "
            "start the server or use tracking=local"
        ) from exc


def sqlite_path(uri: str) -> str | None:
    """The absolute path of a local sqlite store's file; None for a server."""
    if not uri.startswith("sqlite:///"):
        return None
    return os.path.abspath(uri.removeprefix("sqlite:///"))


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise opening a local sqlite store: two sweeps starting at once would both
    run MLflow's schema migrations (measured: one of them crashed) or both create the
    experiment. A server store needs no lock."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_experiment(uri: str, experiment: str, root: str) -> tuple["MlflowClient", str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        artifacts = None
        if uri.startswith("sqlite:"):
            artifacts = "file://" + os.path.abspath(os.path.join(root, "mlartifacts"))
        try:
            kind = {TAG_EXPERIMENT_KIND: MODEL_TRAINING}
            return client, client.create_experiment(experiment, artifact_location=artifacts, tags=kind)
        except MlflowException:  # created meanwhile by another sweep on the same server
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    if found.tags.get(TAG_EXPERIMENT_KIND) != MODEL_TRAINING:  # made by an older ktsweep, or by hand
        client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
    return client, found.experiment_id


def find_runs(client: "MlflowClient", experiment_id: str, **tags: str) -> list[Any]:
    """Runs of the experiment whose ktsweep tags match (``sweep=..., kind=...``).

    ``client`` is an ``MlflowClient``, or a ``SqliteRuns`` reader (which answers itself).
    """
    if hasattr(client, "find_runs"):
        return client.find_runs(experiment_id, **tags)
    filters = " and ".join(f"tags.`ktsweep.{key}` = '{value}'" for key, value in tags.items())
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filters, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs




def rename_sweep(client: "MlflowClient", experiment_id: str, name: str, new_name: str) -> int:
    """Move a sweep's runs (its own and its trials') to another sweep name, so a new sweep can take the
    name: nothing is deleted, ``ktsweep show NEW_NAME`` shows them. The number of runs renamed."""
    runs = find_runs(client, experiment_id, sweep=name)
    for run in runs:
        client.set_tag(run.info.run_id, TAG_SWEEP, new_name)
        if run.data.tags.get(TAG_KIND) == "sweep" and run.info.run_name == name:
            client.set_tag(run.info.run_id, "mlflow.runName", new_name)
    return len(runs)
