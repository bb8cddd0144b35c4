"""One sweep, end to end: data -> oracle -> Ray Tune -> MLflow -> registered best model."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from conf.schema import Config
from search.errors import UsageError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we log to MLflow, not JSON/CSV/TBX
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ctrl-C must stop the sweep at once and leave running trials to be retried on resume;
# Tune's own handler would instead finish them as failed trials.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from the driver
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# Tune's result analysis looks for the JSON/CSV files we chose not to write; its warnings are noise.
logging.getLogger("ray.tune").setLevel(logging.ERROR)

TAG_PUBLISHED = "ktsweep.published_trial"
REPORT_FILE = "report.html"
WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONWARNINGS": "ignore",
}


@dataclass
class SweepOutcome:
    """What a finished (or stopped) sweep produced; the CLI prints it."""

    name: str
    status: str  # FINISHED | FAILED | KILLED
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    objective: str
    direction: str
    completed: int
    failed: int
    wall_seconds: float
    tracking_seconds: float  # the sweep waiting on tracking (writes themselves run on a thread)
    tracking_write_seconds: float = 0.0  # time in MLflow calls, on the writer thread
    best_trial_id: Optional[str] = None
    best_score: Optional[float] = None
    model_version: Optional[str] = None
    registered_model: Optional[str] = None
    promoted: bool = False
    promotion: str = ""
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    unsynced: Optional[str] = None  # MLflow stopped answering: what is kept where, and the sync command


def model_card(config: Config, dataset: Any, trial: Any, *, name: str, parent_run_id: str, uri: str) -> dict[str, Any]:
    """Everything a deployer needs to trust a model, stored beside it."""
    from search.registry import versions

    metrics = {key: float(trial.metrics.get_best_value(key)) for key in trial.metrics.metrics}
    return {
        "hyperparameters": {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")},
        "objective": {"name": config.sweep.objective, "direction": config.sweep.direction, "value": float(trial.score)},
        "metrics": metrics,
        "best_epoch": trial.best_step,
        "data": {
            "name": config.data.name,
            "task": dataset.task,
            "input_shape": list(dataset.x_train.shape[1:]),
            "dtype": str(dataset.x_train.dtype),
            "n_classes": dataset.n_classes,
            "feature_names": list(dataset.feature_names),
            "sizes": dataset.sizes(),
        },
        "lineage": {
            "sweep": name,
            "trial_id": trial.trial_id,
            "parent_run_id": parent_run_id,
            "tracking_uri": uri,
            "git_commit": git_commit(),
            "hypermodel": config.hypermodel._target_,
            "strategy": config.tuner._target_,
        },
        "versions": versions(),
    }


def publish_final(
    config: Config, outcome: SweepOutcome, *, client: Any, dataset: Any, hypermodel: Any, trial: Any,
    checkpoint: str, sweep_dir: str,
) -> None:
    """Retrain and/or test the best trial as configured, then log, register and promote the model."""
    import mlflow

    from hypermodels.base import model_inputs
    from search.final import finalize
    from search.registry import publish_best

    final = config.sweep.final
    model_dir, result = finalize(
        dataset=dataset, hypermodel=hypermodel, trial=trial, checkpoint=checkpoint, retrain=final.retrain,
        batch_size=config.sweep.batch_size, cpus=config.executor.cpus_per_trial,
        out_dir=os.path.join(sweep_dir, "final"),
    )
    if final.evaluate_test and result.test_metrics:
        outcome.test_metrics = result.test_metrics
        mlflow.log_metrics(result.test_metrics)
    mlflow.set_tag("ktsweep.final", f"retrained for {result.epochs} epochs" if result.retrained else "best trial's model")
    card = model_card(config, dataset, trial, name=outcome.name, parent_run_id=outcome.parent_run_id, uri=outcome.tracking_uri)
    card["final"] = {"retrained": result.retrained, "epochs": result.epochs, "test_metrics": outcome.test_metrics}
    publication = publish_best(
        client,
        checkpoint_dir=model_dir,
        example=model_inputs(hypermodel, dataset.x_val[:5]),
        card=card,
        registered_model=config.tracking.registered_model if config.tracking.register else None,
        promote=config.tracking.promote,
    )
    outcome.model_version = publication.version
    outcome.registered_model = publication.name
    outcome.promoted = publication.promoted
    outcome.promotion = publication.reason


def sweep_name(config: Config, strategy: str) -> str:
    if config.sweep.name:
        return config.sweep.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{config.data.name}-{strategy}-{stamp}"


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


OVERRIDES_FILE = "overrides.json"


def save_overrides(sweep_dir: str, overrides: list[str]) -> None:
    """Keep the command's overrides beside the sweep: ``ktsweep resume`` composes them again."""
    path = os.path.join(sweep_dir, OVERRIDES_FILE)
    if os.path.exists(path):
        return  # a resumed sweep keeps its original command
    with open(f"{path}.tmp", "w") as fh:
        json.dump(overrides, fh)
    os.replace(f"{path}.tmp", path)


def load_overrides(root: str, name: str) -> list[str]:
    path = os.path.join(os.path.abspath(root), "sweeps", name, OVERRIDES_FILE)
    if not os.path.exists(path):
        raise UsageError(f"no sweep named {name!r} under {os.path.abspath(root)}; `ktsweep list` shows the sweeps")
    with open(path) as fh:
        return json.load(fh)


def worker_setup(address: Optional[str]) -> dict[str, Any]:
    """How workers get their environment: inherited from this process locally, runtime_env on a cluster."""
    if address:
        return {"runtime_env": {"env_vars": WORKER_ENV}}
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    return {}


def check_reachable(address: Optional[str]) -> None:
    """Fail in seconds on a wrong cluster address (Ray itself retries for minutes)."""
    import socket

    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at executor.address={address} ({type(exc).__name__}: {exc}); "
            "check the address (ray://HOST:10001 or HOST:6379), or leave executor.address unset to run locally"
        ) from exc


def start_ray(config: Config) -> None:
    """Join the configured cluster, or start a local Ray once per process (reused by later sweeps)."""
    import ray

    if not ray.is_initialized():
        check_reachable(config.executor.address)
        try:
            ray.init(
                address=config.executor.address,
                include_dashboard=False,
                log_to_driver=config.executor.log_to_driver,
                logging_level=logging.ERROR,
                **worker_setup(config.executor.address),
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise UsageError(
                f"cannot reach the Ray cluster at executor.address={config.executor.address} ({detail}); "
                "check the address, or leave executor.address unset to run locally"
            ) from exc
    check_resources(config, ray.cluster_resources())


def check_resources(config: Config, available: dict[str, float]) -> None:
    """A trial asking for more than any cluster has would wait forever: say so before starting."""
    executor = config.executor
    wanted = {"CPU": ("cpus_per_trial", executor.cpus_per_trial), "GPU": ("gpus_per_trial", executor.gpus_per_trial)}
    wanted.update({name: (f"resources_per_trial.{name}", amount) for name, amount in executor.resources_per_trial.items()})
    for resource, (key, amount) in wanted.items():
        have = available.get(resource, 0)
        if amount > have:
            raise UsageError(
                f"executor.{key}={amount:g} is more than the cluster's {have:g} {resource}; "
                f"use executor.{key}<={have:g}, or add nodes that have it"
            )


def max_concurrent(config: Config) -> int:
    import ray

    if config.executor.max_concurrent:
        return config.executor.max_concurrent
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus // config.executor.cpus_per_trial))


def load_data(config: Config) -> Any:
    from hydra.utils import instantiate

    try:
        return instantiate(config.data)
    except UsageError:
        raise
    except Exception as exc:  # hydra wraps the loader's own error
        cause = exc.__cause__ or exc
        if isinstance(cause, UsageError):
            raise cause from None
        raise UsageError(f"cannot load data={config.data.name}: {type(cause).__name__}: {cause}") from exc


def load_hypermodel(config: Config, dataset: Any) -> Any:
    """The configured HyperModel, told about the data; a mismatch with the data is one clear line."""
    from hydra.utils import instantiate

    try:
        return instantiate(config.hypermodel, _convert_="object", data_spec=dataset.spec)
    except Exception as exc:  # hydra wraps the constructor's own error
        cause = exc.__cause__ or exc
        raise UsageError(f"cannot build hypermodel {config.hypermodel._target_}: {cause}") from exc


def run_sweep(config: Config, *, resolved_yaml: str, overrides: Optional[list[str]] = None) -> SweepOutcome:
    """Run (or resume, when ``sweep.name`` exists) one sweep; return what it produced."""
    import mlflow

    from search.oracle_searcher import OracleSearcher
    from search.oracles import build_oracle, planned_trials, strategy_name
    from search.progress import SweepProgress
    from search.records import connect, find_runs, local_uri
    from search.tracking import MlflowTracking

    started = time.time()
    sweep = config.sweep
    root = os.path.abspath(sweep.root)
    strategy = strategy_name(config.tuner._target_)
    name = sweep_name(config, strategy)
    sweep_dir = os.path.join(root, "sweeps", name)
    os.makedirs(sweep_dir, exist_ok=True)
    save_overrides(sweep_dir, [o for o in (overrides or []) if not o.startswith("sweep.name=")] + [f"sweep.name={name}"])
    uri = config.tracking.uri or local_uri(root)

    # Opening MLflow (a new store builds its schema: ~1.5 s) overlaps loading the data and starting Ray.
    with ThreadPoolExecutor(1, thread_name_prefix="ktsweep-connect") as pool:
        store = pool.submit(connect, uri, config.tracking.experiment, root=root)
        dataset = load_data(config)
        hypermodel = load_hypermodel(config, dataset)
        oracle = build_oracle(
            config.tuner,
            objective=sweep.objective,
            direction=sweep.direction,
            max_trials=sweep.max_trials,
            hypermodel=hypermodel,
            directory=os.path.join(sweep_dir, "oracle"),
        )
        searcher = OracleSearcher(oracle)
        if store.done():
            store.result()  # an unreachable store raises here, before Ray starts
        start_ray(config)  # last of the set-up: bad config or data fail before Ray starts
        client, experiment_id = store.result()

    previous = find_runs(client, experiment_id, sweep=name, kind="sweep")
    previous_tags = previous[0].data.tags if previous else {}
    parent_run_id = open_sweep_run(
        config, name=name, strategy=strategy, experiment_id=experiment_id,
        resume_run_id=previous[0].info.run_id if previous else None,
    )
    mlflow.log_text(resolved_yaml, "config.yaml")
    mlflow.log_dict(dataset.sizes(), "data_sizes.json")

    tracking = MlflowTracking(client, experiment_id=experiment_id, parent_run_id=parent_run_id, sweep=name, oracle=oracle,
                              sweep_dir=sweep_dir)
    progress = SweepProgress(total=planned_trials(oracle), objective=sweep.objective, direction=sweep.direction)
    tuner = make_tuner(config, searcher, dataset=dataset, hypermodel=hypermodel, sweep_dir=sweep_dir,
                       callbacks=[tracking, progress])
    outcome = SweepOutcome(
        name=name, status="FINISHED", tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id,
        objective=sweep.objective, direction=sweep.direction, completed=0, failed=0, wall_seconds=0.0,
        tracking_seconds=0.0,
    )
    try:
        tuner.fit()
    except BaseException as exc:  # Ctrl-C, or Ray itself failing: record it, then let it propagate
        outcome.status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        progress.close()
        finish_sweep(config, outcome, tracking=tracking, searcher=searcher, client=client, dataset=dataset,
                     hypermodel=hypermodel, sweep_dir=sweep_dir, previous_tags=previous_tags, started=started)
    return outcome


def finish_sweep(
    config: Config, outcome: SweepOutcome, *, tracking: Any, searcher: Any, client: Any, dataset: Any, hypermodel: Any,
    sweep_dir: str, previous_tags: dict[str, str], started: float,
) -> None:
    """After the trials (finished, failed or interrupted): deliver every trial record, then close the
    sweep in MLflow; if MLflow is gone, nothing is lost and ``outcome.unsynced`` says how to sync."""
    outcome.unsynced = tracking.close()
    outcome.tracking_seconds, outcome.tracking_write_seconds = tracking.seconds_waiting, tracking.seconds_writing
    if outcome.unsynced is None:
        try:
            close_sweep(config, outcome, searcher=searcher, client=client, dataset=dataset, hypermodel=hypermodel,
                        sweep_dir=sweep_dir, previous_tags=previous_tags, started=started)
        except Exception as exc:  # MLflow went away while closing: nothing is lost, sync closes it later
            if store_answers(client):
                raise
            outcome.unsynced = (
                f"MLflow at {outcome.tracking_uri} stopped answering while the sweep was being closed "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                f"run `ktsweep sync {outcome.name}` when it is back"
            )
    if outcome.unsynced is not None:
        count_trials(outcome, searcher)
        outcome.wall_seconds = time.time() - started
        end_active_run_offline()


def store_answers(client: Any) -> bool:
    try:
        client.search_experiments(max_results=1)
        return True
    except Exception:
        return False


def count_trials(outcome: SweepOutcome, searcher: Any) -> None:
    from search.oracles import best_trials

    trials = searcher.oracle.trials.values()
    outcome.completed = sum(t.status == "COMPLETED" for t in trials)
    outcome.failed = sum(t.status in ("FAILED", "INVALID") for t in trials)
    best = best_trials(searcher.oracle, 1)
    if best:
        outcome.best_trial_id, outcome.best_score = best[0].trial_id, float(best[0].score)


def end_active_run_offline() -> None:
    """Leave MLflow's active-run stack empty even though the store cannot be told (sync ends the run)."""
    import mlflow

    try:
        mlflow.end_run()  # pops the run first, then fails to reach the store
    except Exception:
        pass


def open_sweep_run(
    config: Config, *, name: str, strategy: str, experiment_id: str, resume_run_id: Optional[str]
) -> str:
    """Start (or, on resume, reopen) the sweep's parent run as MLflow's active run."""
    import mlflow

    from search.records import TAG_DIRECTION, TAG_KIND, TAG_OBJECTIVE, TAG_STATUS, TAG_STRATEGY, TAG_SWEEP

    sweep = config.sweep
    tags = {
        TAG_KIND: "sweep",
        TAG_SWEEP: name,
        TAG_STRATEGY: strategy,
        TAG_OBJECTIVE: sweep.objective,
        TAG_DIRECTION: sweep.direction,
        TAG_STATUS: "running",
        "ktsweep.data": config.data.name,
        "ktsweep.hypermodel": config.hypermodel._target_,
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = mlflow.start_run(
        run_id=resume_run_id, experiment_id=experiment_id, run_name=None if resume_run_id else name, tags=tags
    )
    if resume_run_id is None:
        mlflow.log_params(
            {
                "strategy": strategy,
                "objective": sweep.objective,
                "direction": sweep.direction,
                "max_trials": sweep.max_trials,
                "epochs": sweep.epochs,
                "batch_size": sweep.batch_size,
                "data": config.data.name,
                "hypermodel": config.hypermodel._target_,
                "seed": sweep.seed,
            }
        )
    return run.info.run_id


def make_tuner(config: Config, searcher: Any, *, dataset: Any, hypermodel: Any, sweep_dir: str, callbacks: list) -> Any:
    """The Ray Tune experiment: the oracle searcher, warm reused actors, our callbacks, one attempt dir."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.callbacks import CheckpointRecorder, FatalStop
    from search.trainable import TrialSettings, run_trial

    sweep = config.sweep
    settings = TrialSettings(
        objective=sweep.objective,
        direction=sweep.direction,
        epochs=sweep.epochs,
        batch_size=sweep.batch_size,
        cpus_per_trial=config.executor.cpus_per_trial,
        terminate_on_nan=sweep.callbacks.terminate_on_nan,
        early_stopping=sweep.callbacks.early_stopping.enabled,
        patience=sweep.callbacks.early_stopping.patience,
        restore_best_weights=sweep.callbacks.early_stopping.restore_best_weights,
        tensorboard_dir=os.path.join(sweep_dir, "tensorboard") if sweep.callbacks.tensorboard else None,
        model_checkpoint_dir=os.path.join(sweep_dir, "checkpoints") if sweep.callbacks.model_checkpoint else None,
    )
    executor = config.executor
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, dataset=dataset, hypermodel=hypermodel, settings=settings),
        {"cpu": executor.cpus_per_trial, "gpu": executor.gpus_per_trial, **executor.resources_per_trial},
    )
    attempt = next_attempt(sweep_dir)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent(config)),
            metric="objective",
            mode=sweep.direction,
            num_samples=-1,
            reuse_actors=True,
            trial_name_creator=lambda trial: f"trial_{trial.config['kt_trial_id']}",
            trial_dirname_creator=lambda trial: f"trial_{trial.config['kt_trial_id']}_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=f"ray-{attempt}",
            storage_path=storage_path(config, sweep_dir),
            callbacks=[CheckpointRecorder(searcher), *callbacks],
            stop=FatalStop(searcher),
            failure_config=tune.FailureConfig(max_failures=config.executor.max_failures),
            verbose=0,
        ),
    )


def storage_path(config: Config, sweep_dir: str) -> str:
    """Where this sweep's Ray experiments (and so its trial checkpoints) are stored."""
    if not config.executor.storage_path:
        return sweep_dir
    base = config.executor.storage_path.rstrip("/")
    name = os.path.basename(sweep_dir)
    return f"{base}/{name}" if "://" in base else os.path.join(os.path.abspath(base), name)


def next_attempt(sweep_dir: str) -> int:
    """Each run or resume of a sweep is a new Ray experiment ``ray-N``; counted locally, whatever the storage."""
    path = os.path.join(sweep_dir, "attempts")
    count = len(open(path).read().split()) if os.path.exists(path) else 0
    with open(path, "a") as fh:
        fh.write(f"ray-{count}\n")
    return count


def close_sweep(
    config: Config, outcome: SweepOutcome, *, searcher: Any, client: Any, dataset: Any, hypermodel: Any,
    sweep_dir: str, previous_tags: dict[str, str], started: float,
) -> None:
    """Count, publish the best model (unless interrupted or already published), end the parent run."""
    import mlflow

    from search.oracles import best_trials
    from search.records import TAG_STATUS

    oracle = searcher.oracle
    count_trials(outcome, searcher)
    if searcher.fatal_error:
        outcome.error = searcher.fatal_error
        if outcome.status == "FINISHED":
            outcome.status = "FAILED"
    best = best_trials(oracle, 1)
    if best and outcome.status != "KILLED":
        checkpoint = searcher.checkpoints.get(best[0].trial_id)
        if previous_tags.get(TAG_PUBLISHED) == best[0].trial_id:  # resumed, nothing better: do not register twice
            outcome.promotion = f"trial {best[0].trial_id} was already published"
        elif checkpoint:
            publish_final(config, outcome, client=client, dataset=dataset, hypermodel=hypermodel,
                          trial=best[0], checkpoint=checkpoint, sweep_dir=sweep_dir)
            mlflow.set_tag(TAG_PUBLISHED, best[0].trial_id)
        mlflow.log_metrics({"best_objective": outcome.best_score})
        mlflow.set_tag("ktsweep.best_trial_id", outcome.best_trial_id)
    mlflow.log_metrics({"trials_completed": outcome.completed, "trials_failed": outcome.failed})
    oracle_file = os.path.join(sweep_dir, "oracle", "oracle.json")
    if os.path.exists(oracle_file):
        mlflow.log_artifact(oracle_file, "oracle")
    outcome.wall_seconds = time.time() - started
    mlflow.log_metric("wall_seconds", outcome.wall_seconds)
    if outcome.error:
        mlflow.set_tag("ktsweep.error", outcome.error[:5000])
    mlflow.set_tag(TAG_STATUS, outcome.status.lower())
    if config.sweep.report and outcome.status != "KILLED":  # Ctrl-C must end in seconds; `ktsweep report` makes it later
        log_report(client, outcome)
    mlflow.end_run(status=outcome.status)


def log_report(client: Any, outcome: SweepOutcome) -> None:
    """The HTML report, as an artifact of the sweep's run; a broken chart must not fail the sweep."""
    import mlflow

    from dashboards.report import build_report

    try:
        mlflow.log_text(build_report(client, outcome.experiment_id, outcome.name), REPORT_FILE)
    except Exception as exc:  # plotting trouble is reported, not raised
        mlflow.set_tag("ktsweep.report_error", f"{type(exc).__name__}: {exc}"[:5000])
