"""The probe of data the workers load: the loader runs once in a worker, before any trial, and the driver
learns what it needs (task, classes, shapes, a few rows, sizes, digest) without reading the data.

It runs as a Ray task with a trial's resources, in a worker process of its own (``submit``), which
preloads nothing: a loader that describes itself (an image folder) is described there without the
framework, any other is loaded after the trial's backend set-up. The final model's retrain and test
evaluation run in that worker later, with the data loaded already or then (``pipelines._LOADED``). Bad data (a folder without classes, a loader
returning something else, splits whose shapes differ) fails here, in one line, before the sweep starts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from ktsweep.conf.nodes import node_items
from ktsweep.conf.schema import Config
from ktsweep.core.errors import UsageError
from ktsweep.core.user_code import WithCodeDir, code_dir
from ktsweep.execution.warm_workers import DATA_TASKS


def _summarise(data: Any, *, cpus: float, gpus: float, cache_root: Optional[str]) -> Any:
    from ktsweep.execution import worker_backend

    return data.summarise(lambda: worker_backend.prepare(cpus=cpus, gpus=gpus, cache_root=cache_root))


def worker_data(config: Config, loader: Optional[Callable] = None, *, name: Optional[str] = None,
                source: Optional[str] = None) -> Any:
    """The sweep's ``WorkerData``: the configured loader by name (imported only in the workers) with its
    ``data.*`` keys, paths made absolute (a trial's working folder is Ray Tune's); or the API's function."""
    from ktsweep.data.pipelines import WorkerData

    folder = code_dir(config.sweep.code_dir)
    if loader is not None:
        return WorkerData(name=name or config.data.name, source=source or repr(loader),
                          loader=WithCodeDir(loader, folder), code_folder=folder,
                          steps_per_epoch=config.sweep.steps_per_epoch, validation_steps=config.sweep.validation_steps)
    items = {key: value for key, value in node_items(config.data).items() if key != "load_in"}
    items = {key: os.path.abspath(os.path.expanduser(value)) if key.endswith("path") and isinstance(value, str) else value
             for key, value in items.items()}
    return WorkerData(name=config.data.name, source=items["path"] if isinstance(items.get("path"), str) else config.data._target_,
                      loader=config.data._target_, kwargs=items, code_folder=folder,
                      steps_per_epoch=config.sweep.steps_per_epoch, validation_steps=config.sweep.validation_steps)


# Ray tasks on data the workers load (the probe, the final model): a worker of their own, which preloads nothing
TASK_ENV = {"env_vars": {DATA_TASKS: "1"}}


class _Early:
    """The probe the CLI submits as soon as its local Ray is up, while the driver still imports."""

    ref: Any = None
    data: Any = None  # the WorkerData submitted (its run id names the sweep run)


def submit(data: Any, config: Config) -> Any:
    """The probe as a Ray task: a trial's resources, in a worker process of its own (see below)."""
    import ray

    executor = config.executor
    # Its own worker process: Ray never gives a worker that ran a task to an actor, so a prestarted one used
    # here would be lost to the trials (measured: the sweep then ran on one warm worker while Ray started
    # another). An environment of its own makes Ray start a fresh worker for the probe instead.
    # The final test evaluation and retrain ask for the same environment, so they land in this worker, the
    # data loaded already (``final.py``).
    task = ray.remote(num_cpus=executor.cpus_per_trial, num_gpus=executor.gpus_per_trial, max_retries=0,
                      resources=dict(executor.resources_per_trial), runtime_env=TASK_ENV)(_summarise)
    cache_root = os.path.abspath(config.sweep.root) if executor.compilation_cache else None
    return task.remote(WithCodeDir(data, code_dir(config.sweep.code_dir)), cpus=executor.cpus_per_trial,
                       gpus=executor.gpus_per_trial, cache_root=cache_root)


def submit_early(config: Config) -> None:
    """Called on the thread that started Ray (``cluster.start_ray_early``): the probe's worker starts while the
    driver imports TensorFlow and MLflow, off the sweep's critical path."""
    if getattr(config.data, "load_in", "driver") != "workers":
        return
    try:
        data = worker_data(config)
        _Early.ref, _Early.data = submit(data, config), data
    except Exception:  # a config this cannot read fails later, in load_data, with its own line
        _Early.ref = _Early.data = None


def probe(data: Any, config: Config) -> Any:
    """``data`` (a ``WorkerData``) with the probe's report filled in; a UsageError as the worker raised it."""
    import ray

    early = _Early.ref if _Early.data is not None and _Early.data.key == data.key else None
    _Early.ref = _Early.data = None
    try:
        report = ray.get(early if early is not None else submit(data, config))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UsageError):
            raise UsageError(str(cause)) from None
        detail = " ".join(f"{type(cause).__name__}: {cause}".split())[:300] if cause else str(exc).splitlines()[0]
        raise UsageError(f"loading data {data.source} in a worker failed ({detail}); check the loader") from None
    return dataclasses.replace(report, loader=data.loader)  # still wrapped, for the trials' workers
