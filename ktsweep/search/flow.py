"""One sweep, end to end: data -> oracle -> Ray Tune -> MLflow -> registered best model."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from ktsweep.conf.schema import Config
from ktsweep.conf.schema.sweep import objectives_of
from ktsweep.core.outcome import SweepOutcome
from ktsweep.core.sweep_folder import save_overrides, sweep_name
from ktsweep.execution.cluster import start_ray
from ktsweep.execution.warm_workers import shut_down_early, started_early, wait_started
from ktsweep.search.experiment import build_names, make_tuner
from ktsweep.search.inputs import SweepInputs, load_inputs
from ktsweep.search.interrupts import closing_after_ctrl_c, say
from ktsweep.search.parent_run import finish_sweep, open_sweep_run
from ktsweep.search.reopen import Reopened, renamed, reopen, trials_done

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
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm bars would bury the sweep's lines
# Tune's result analysis looks for the JSON/CSV files we chose not to write; its warnings are noise.
logging.getLogger("ray.tune").setLevel(logging.ERROR)


@dataclass
class _Store:
    """Where the sweep is recorded: its name, folder and MLflow experiment."""

    name: str
    strategy: str
    sweep_dir: str
    uri: str
    reopened: Reopened
    experiment: str = ""  # tracking.experiment (its name)
    client: Any = None
    experiment_id: str = ""


def run_sweep(
    config: Config, *, resolved_yaml: str, overrides: Optional[list[str]] = None, inputs: Optional[SweepInputs] = None,
    end_process_on_third_ctrl_c: bool = False, reopen_options: Optional[dict[str, Any]] = None,
) -> SweepOutcome:
    """Run (or resume, when ``sweep.name`` exists with the same search) one sweep; return what it produced.

    ``inputs`` (the Python API) brings the data, HyperModel and oracle as objects; else the config names them.
    ``end_process_on_third_ctrl_c``: the CLI's; in-process callers (a notebook) get a KeyboardInterrupt.
    ``reopen_options``: the Python API's ``overwrite`` and ``ways_on`` for ``reopen`` (else the config's).
    """
    _import_engine()
    started = time.time()
    store = _claim_folder(config, overrides, reopen_options or {})
    inputs, searcher, pbt_fixed = _set_up(config, inputs, store)
    _say_what_was_there(store, inputs.oracle)
    previous_tags, parent_run_id, dataset_input = _open_parent_run(config, store, inputs, resolved_yaml)
    try:
        tracking, progress = _callbacks(config, store, inputs.oracle, parent_run_id, dataset_input)
        tuner = make_tuner(config, searcher, dataset=inputs.dataset, hypermodel=inputs.hypermodel, pbt_fixed=pbt_fixed,
                           sweep_dir=store.sweep_dir, callbacks=[tracking, progress],
                           keras_callbacks=inputs.keras_callbacks)
    except BaseException:  # no trial has run: leave no active run behind in the caller's process (a notebook)
        import mlflow

        mlflow.end_run("FAILED")
        raise
    outcome = SweepOutcome(
        name=store.name, status="FINISHED", tracking_uri=store.uri, experiment_id=store.experiment_id,
        parent_run_id=parent_run_id, objective=config.sweep.objective, direction=config.sweep.direction,
        completed=0, failed=0, wall_seconds=0.0, tracking_seconds=0.0,
    )
    interrupt: Optional[KeyboardInterrupt] = None
    try:
        tuner.fit()
        outcome.already_finished = store.reopened.resumed and not tracking.attempts  # this run trained nothing
        # overlaps closing (CLI only); data the workers load is tested (or a lost model retrained) in a worker
        shut_down_early(more_ray_work=config.sweep.final.retrain or inputs.dataset.in_workers)
    except BaseException as exc:  # Ctrl-C, or Ray itself failing: record it, then let it propagate
        outcome.status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
        raise
    finally:
        with (closing_after_ctrl_c(tracking.writer, sweep_dir=store.sweep_dir, end_process=end_process_on_third_ctrl_c)
              if interrupt else contextlib.nullcontext()):
            progress.close()
            finish_sweep(config, outcome, tracking=tracking, searcher=searcher, client=store.client,
                         dataset=inputs.dataset, hypermodel=inputs.hypermodel, sweep_dir=store.sweep_dir,
                         previous_tags=previous_tags, started=started)
        kept = tracking.writer.kept_notice()
        if interrupt is not None and kept:
            interrupt.add_note(kept)  # the CLI prints it with its "interrupted" line
    return outcome


def _import_engine() -> None:
    """MLflow, Ray Tune and Keras Tuner, imported on this thread once a local Ray has started and before
    the MLflow thread opens the store: the order the sweep's fixed cost was measured in (bench/RESULTS.md)."""
    if started_early():
        wait_started()  # before this thread imports Ray Tune: see warm_workers.start_early
    import mlflow  # noqa: F401

    import ktsweep.search.oracles  # noqa: F401
    import ktsweep.search.progress  # noqa: F401
    import ktsweep.search.searcher  # noqa: F401
    import ktsweep.tracking.dataset_input  # noqa: F401
    import ktsweep.tracking.mlflow_callback  # noqa: F401
    from ktsweep.execution.worker_backend import keep_tensorflow_out

    keep_tensorflow_out()  # the driver's final evaluation and published model, too, on JAX or PyTorch


def _claim_folder(config: Config, overrides: Optional[list[str]], reopen_options: dict[str, Any]) -> _Store:
    """The sweep's name and folder, with the overrides that ``ktsweep resume NAME`` will compose again;
    a sweep already under that name is resumed only if its search is the same (``reopen``)."""
    from ktsweep.conf.schema.tuner import strategy_name
    from ktsweep.execution.cluster import storage_for
    from ktsweep.tracking.records import local_uri

    root = os.path.abspath(config.sweep.root)
    strategy = strategy_name(config.tuner._target_)
    name = sweep_name(config, strategy)
    sweep_dir = os.path.join(root, "sweeps", name)
    uri = config.tracking.uri or local_uri(root)
    reopened = reopen(config, name=name, sweep_dir=sweep_dir, uri=uri, local_uri=local_uri(root),
                      storage_of=lambda setting: storage_for(setting, sweep_dir), **reopen_options)
    os.makedirs(sweep_dir, exist_ok=True)
    # what `ktsweep resume NAME` composes again: this name, and no second overwrite
    kept = [o for o in (overrides or []) if not o.lstrip("+~").startswith(("sweep.name=", "sweep.overwrite="))]
    save_overrides(sweep_dir, [*kept, f"sweep.name={name}"])
    return _Store(name, strategy, sweep_dir, uri, reopened, config.tracking.experiment)


def _say_what_was_there(store: _Store, oracle: Any) -> None:
    """First line of a run under an existing name: resumed (how far it had got), or set aside and renamed
    in MLflow, before the sweep's run is looked up by its name."""
    from ktsweep.tracking.records import connect, rename_sweep

    replaces = store.reopened.replaces
    if replaces:  # in the store the old sweep is recorded in, which may not be this run's
        client, experiment_id = store.client, store.experiment_id
        if (replaces["tracking_uri"], replaces["experiment"]) != (store.uri, store.experiment):
            client, experiment_id = connect(replaces["tracking_uri"], replaces["experiment"], root=os.path.dirname(
                os.path.dirname(store.sweep_dir)))
        count = rename_sweep(client, experiment_id, store.name, replaces["name"])
        renamed(store.sweep_dir)
        say(f"sweep {store.name} existed: set aside as {replaces['name']} ({count} MLflow runs renamed); "
            "starting afresh")
    if store.reopened.resumed:
        say(f"sweep {store.name} exists: resuming, {trials_done(oracle)} trials done")


def _set_up(config: Config, inputs: Optional[SweepInputs], store: _Store) -> tuple[SweepInputs, Any, Optional[list[str]]]:
    """Data, HyperModel, oracle and its searcher, Ray, and the MLflow store (filled into ``store``);
    with ``scheduler=pbt``, the names ``build()`` declares (``build_names``), else None.

    Opening MLflow (its import; a new store is a copy of a cached empty one, store_template.py)
    overlaps loading the data and starting Ray; Ray starts last, so a bad config or bad data fail first."""
    from ktsweep.search.searcher import OracleSearcher
    from ktsweep.tracking.records import connect

    with ThreadPoolExecutor(1, thread_name_prefix="ktsweep-connect") as pool:
        connected = pool.submit(connect, store.uri, config.tracking.experiment, root=os.path.abspath(config.sweep.root))
        inputs = inputs or load_inputs(config)
        inputs.oracle = _oracle(config, inputs, store.sweep_dir)  # the caller (Python API) reads the results from it
        searcher = OracleSearcher(inputs.oracle)
        pbt_fixed = (build_names(inputs.oracle, inputs.hypermodel, config.scheduler.mutable, store.sweep_dir)
                     if config.scheduler.kind == "pbt" else None)
        if connected.done():
            connected.result()  # an unreachable store raises here, before Ray starts
        start_ray(config)
        store.client, store.experiment_id = connected.result()
    return inputs, searcher, pbt_fixed


def _oracle(config: Config, inputs: SweepInputs, sweep_dir: str) -> Any:
    """The configured Keras Tuner oracle (reloaded from the sweep's folder when it exists), or the
    Python API's own tuner's oracle, made to save atomically and given its space."""
    from ktsweep.search.oracles import build_oracle, keep_state_atomic, populate_space

    if inputs.oracle is None:
        return build_oracle(
            config.tuner, objective=config.sweep.objective, direction=config.sweep.direction,
            max_trials=config.sweep.max_trials, hypermodel=inputs.hypermodel,
            directory=os.path.join(sweep_dir, "oracle"),
        )
    keep_state_atomic(inputs.oracle)
    populate_space(inputs.oracle, inputs.hypermodel)
    return inputs.oracle


def _open_parent_run(
    config: Config, store: _Store, inputs: SweepInputs, resolved_yaml: str,
) -> tuple[dict[str, str], str, dict[str, Any]]:
    """The sweep's MLflow run, opened anew or resumed by name: (the tags it had, its id, the dataset input)."""
    import mlflow

    from ktsweep.tracking.dataset_input import describe_dataset
    from ktsweep.tracking.records import find_runs

    previous = find_runs(store.client, store.experiment_id, sweep=store.name, kind="sweep")
    dataset_input = describe_dataset(config.data, inputs.dataset)
    parent_run_id = open_sweep_run(
        config, name=store.name, strategy=store.strategy, experiment_id=store.experiment_id,
        resume_run_id=previous[0].info.run_id if previous else None, sweep_dir=store.sweep_dir, dataset=dataset_input,
    )
    mlflow.log_text(resolved_yaml, "config.yaml")
    mlflow.log_dict(inputs.dataset.sizes(), "data_sizes.json")
    return (previous[0].data.tags if previous else {}), parent_run_id, dataset_input


def _callbacks(config: Config, store: _Store, oracle: Any, parent_run_id: str, dataset_input: dict[str, Any]) -> tuple[Any, Any]:
    """Ray Tune's callbacks of the sweep: each trial recorded in MLflow, and the progress shown."""
    from ktsweep.search.oracles import best_trials, planned_trials
    from ktsweep.search.progress import SweepProgress
    from ktsweep.tracking.mlflow_callback import MlflowTracking

    best = best_trials(oracle, 1)  # a resumed sweep's best so far goes on from where it stopped
    tracking = MlflowTracking(
        store.client, experiment_id=store.experiment_id, parent_run_id=parent_run_id, sweep=store.name,
        oracle=oracle, sweep_dir=store.sweep_dir, best_score=float(best[0].score) if best else None,
        dataset=dataset_input, objectives=tuple(o.name for o in objectives_of(config.sweep)),
    )
    progress = SweepProgress(total=planned_trials(oracle), objective=config.sweep.objective,
                             direction=config.sweep.direction)
    return tracking, progress
