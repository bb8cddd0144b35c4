"""Run a small sweep the way ``ktsweep run`` does (Ray started early, on its own) and print, as JSON,
the pids of Ray's prestarted workers and the pids the trials ran in, and what Ray's preload gave a new
worker and a data task's worker before their tasks. Used by tests/test_warm_workers.py.

    python tests/warm_workers_probe.py ROOT [hydra overrides]
"""

from __future__ import annotations

import json
import sys
import time


def idle_workers() -> set[int]:
    """Ray workers waiting for work (``ray::IDLE``) under this driver: the raylet is our child."""
    import psutil

    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline()[:1] == ["ray::IDLE"]:
                found.add(proc.pid)
        except psutil.Error:
            pass
    return found


def _frameworks() -> list[str]:
    return sorted(name for name in ("tensorflow", "keras", "keras_tuner") if name in sys.modules)


def main(root: str, overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import check_schema, check_targets, compose
    from ktsweep.execution import warm_workers
    from ktsweep.execution.cluster import start_ray, start_ray_early
    from ktsweep.search.flow import run_sweep
    from ktsweep.tracking.records import connect, find_runs

    cfg = compose([f"sweep.root={root}", "sweep.name=warm", *overrides])
    config = check_schema(cfg)
    start_ray_early(config)
    check_targets(config)
    start_ray(config)
    deadline = time.time() + 120
    while len(prestarted := idle_workers()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    import ray

    from ktsweep.execution.data_probe import TASK_ENV

    # What Ray's preload gives a worker before its task: any worker's (an environment of its own keeps the
    # prestarted ones for the trials), and a data task's. Asked before the sweep, which shuts this Ray down.
    preloaded = ray.get(ray.remote(num_cpus=1, runtime_env={"env_vars": {"KTSWEEP_CHECK": "1"}})(_frameworks).remote())
    data_task_preloaded = ray.get(ray.remote(num_cpus=1, runtime_env=TASK_ENV)(_frameworks).remote())
    outcome = run_sweep(config, resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True))
    client, experiment_id = connect(outcome.tracking_uri, config.tracking.experiment, root=root)
    trials = find_runs(client, experiment_id, sweep="warm", kind="trial")
    print(json.dumps({
        "prestarted": sorted(prestarted),
        "trial_pids": sorted({int(run.data.tags["ktsweep.worker.pid"]) for run in trials}),
        "trials": len(trials),
        "owned": warm_workers._State.owned,
        "backend": config.backend,
        "preloaded": preloaded,
        "data_task_preloaded": data_task_preloaded,
    }), flush=True)
    warm_workers.leave(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
