"""Run one sweep the way ``ktsweep run`` does and print, as JSON, the driver's own peak RSS (its children, Ray's
processes, not counted), the trials completed and the files the workers read. Used by tests/test_pipelines.py.

    python tests/driver_rss_probe.py ROOT [hydra overrides]
"""

from __future__ import annotations

import json
import resource
import sys


def main(root: str, overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import check_schema, check_targets, compose
    from ktsweep.execution import warm_workers
    from ktsweep.execution.cluster import start_ray_early
    from ktsweep.search.flow import run_sweep
    from ktsweep.tracking.records import connect

    cfg = compose([f"sweep.root={root}", "sweep.name=rss", *overrides])
    config = check_schema(cfg)
    start_ray_early(config)
    check_targets(config)
    outcome = run_sweep(config, resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True))
    client, _ = connect(outcome.tracking_uri, config.tracking.experiment, root=root)
    profile = json.loads(client.get_run(outcome.parent_run_id).inputs.dataset_inputs[0].dataset.profile)
    print(json.dumps({
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "completed": outcome.completed,
        "files": profile["files"],
    }), flush=True)
    warm_workers.leave(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
