"""The probe of data the workers load: the loader runs once in a worker, before any trial, and the driver
learns what it needs (task, classes, shapes, a few rows, sizes, digest) without reading the data.

It runs as a Ray task with a trial's resources and the trial's backend set-up, so the worker it
used can host trials afterwards with the data already loaded (``pipelines._LOADED``). Bad data (a
folder without classes, a loader returning something else, splits whose shapes differ) fails here,
in one line, before the sweep starts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from ktsweep.conf.schema import Config
from ktsweep.core.errors import UsageError
from ktsweep.core.user_code import WithCodeDir, code_dir


def _summarise(data: Any, *, cpus: float, gpus: float, cache_root: Optional[str]) -> Any:
    from ktsweep.execution import worker_backend

    worker_backend.prepare(cpus=cpus, gpus=gpus, cache_root=cache_root)
    return data.summarise()


def probe(data: Any, config: Config) -> Any:
    """``data`` (a ``WorkerData``) with the probe's report filled in; a UsageError as the worker raised it."""
    import ray

    executor = config.executor
    task = ray.remote(num_cpus=executor.cpus_per_trial, num_gpus=executor.gpus_per_trial, max_retries=0,
                      resources=dict(executor.resources_per_trial))(_summarise)
    cache_root = os.path.abspath(config.sweep.root) if executor.compilation_cache else None
    try:
        report = ray.get(task.remote(WithCodeDir(data, code_dir(config.sweep.code_dir)), cpus=executor.cpus_per_trial,
                                     gpus=executor.gpus_per_trial, cache_root=cache_root))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UsageError):
            raise UsageError(str(cause)) from None
        detail = " ".join(f"{type(cause).__name__}: {cause}".split())[:300] if cause else str(exc).splitlines()[0]
        raise UsageError(f"loading data {data.source} in a worker failed ({detail}); check the loader") from None
    return dataclasses.replace(report, loader=data.loader)  # still wrapped, for the trials' workers
