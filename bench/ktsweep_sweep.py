"""One sweep through ktsweep (Ray + MLflow, model registered): the ``ktsweep run`` command itself.

Runs the CLI in this process (Hydra, Ray started during TensorFlow's import, Ray down and
``os._exit`` at the end: ``execution/warm_workers.py``), and prints one JSON line as soon as the sweep
returns: seconds, best objective, trials, seconds spent writing to MLflow. The command's own
output (leaderboard) follows it.
    python bench/ktsweep_sweep.py ROOT tuner=random sweep.max_trials=12 sweep.epochs=5
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time


def main(root: str, overrides: list[str]) -> None:
    started = time.perf_counter()
    from ktsweep.cli.main import main as ktsweep
    from ktsweep.search import flow as sweep

    run_sweep = sweep.run_sweep

    @functools.wraps(run_sweep)
    def reporting(*args, **kwargs):
        outcome = run_sweep(*args, **kwargs)
        print(json.dumps({
            "seconds_inside": time.perf_counter() - started,
            "best": outcome.best_score,
            "test_metrics": dict(outcome.test_metrics),
            "trials": outcome.completed + outcome.failed,
            "tracking_seconds": outcome.tracking_seconds,
            "tracking_write_seconds": outcome.tracking_write_seconds,
            "wall_seconds": outcome.wall_seconds,
            "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # this process only
        }), flush=True)
        return outcome

    sweep.run_sweep = reporting  # the CLI's Hydra app imports it when it runs
    sys.argv = ["ktsweep", "run", f"sweep.root={root}", *overrides]
    ktsweep()  # ends the process (os._exit) once Ray is down


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
