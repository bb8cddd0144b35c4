"""Ray for a sweep: joining or starting the cluster, checking its resources, where trials are stored."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from ktsweep.conf.schema import Config
from ktsweep.core.backend import choose as choose_backend
from ktsweep.core.errors import UsageError
from ktsweep.core.user_code import code_dir, runtime_env_for_cluster
from ktsweep.execution.data_probe import submit_early
from ktsweep.execution.worker_backend import worker_env

WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONWARNINGS": "ignore",
}


def worker_variables(config: Config) -> dict[str, str]:
    """What every worker's environment holds: quiet TensorFlow, and the Keras backend with its limits."""
    executor = config.executor
    backend = worker_env(config.backend, cpus=executor.cpus_per_trial, gpus=executor.gpus_per_trial)
    return {**{key: os.environ.get(key, value) for key, value in WORKER_ENV.items()}, **backend}  # the user's own win


def worker_setup(address: Optional[str], code_folder: str, env: dict[str, str]) -> dict[str, Any]:
    """How workers get their environment: inherited from this process locally, runtime_env on a cluster
    (which also ships the user's code folder to nodes that do not have it)."""
    if address and address != "auto":
        return {"runtime_env": {"env_vars": env, **runtime_env_for_cluster(code_folder)}}
    if address:
        return {"runtime_env": {"env_vars": env}}
    os.environ.update(env)
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
    """Join the configured cluster, or start a local Ray once per process (reused by later sweeps).

    The CLI may have started it already, while the driver imported TensorFlow (``start_ray_early``)."""
    import ray

    from ktsweep.execution import warm_workers

    if warm_workers.started_early():
        warm_workers.wait_started()
    elif not ray.is_initialized():
        join_or_start(config)
    if warm_workers.owns_ray():
        warm_workers.use_prestarted_workers()
    check_resources(config, ray.cluster_resources())


def start_ray_early(config: Config) -> None:
    """For a command that runs one sweep, before TensorFlow's import: start a local Ray on a thread,
    or check that the cluster answers (a wrong address then fails in a second, not after the imports).
    The workers start on the sweep's backend, so it is chosen first (the CLI has chosen it already)."""
    config.backend = choose_backend(config.backend)
    if config.executor.address is None:
        from ktsweep.execution import warm_workers

        def start() -> None:
            join_or_start(config)
            submit_early(config)  # data the workers load: its probe starts while the driver imports

        warm_workers.start_early(start)
    else:
        check_reachable(config.executor.address)


def join_or_start(config: Config) -> None:
    """``ray.init`` for the configured address (a local Ray gets warm workers); one line if it cannot."""
    from ktsweep.execution import warm_workers

    address = config.executor.address
    check_reachable(address)
    try:
        warm_workers.ray_init(
            address,
            include_dashboard=False,
            log_to_driver=config.executor.log_to_driver,
            logging_level=logging.ERROR,
            **worker_setup(address, code_dir(config.sweep.code_dir), worker_variables(config)),
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise UsageError(
            f"cannot reach the Ray cluster at executor.address={address} ({detail}); "
            "check the address, or leave executor.address unset to run locally"
        ) from exc


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


def storage_path(config: Config, sweep_dir: str) -> str:
    """Where this sweep's Ray experiments (and so its trial checkpoints) are stored."""
    return storage_for(config.executor.storage_path, sweep_dir)


def storage_for(setting: Optional[str], sweep_dir: str) -> str:
    """``storage_path`` from the ``executor.storage_path`` setting alone (a stored config's, too)."""
    if not setting:
        return sweep_dir
    base = setting.rstrip("/")
    name = os.path.basename(sweep_dir)
    return f"{base}/{name}" if "://" in base else os.path.join(os.path.abspath(base), name)
