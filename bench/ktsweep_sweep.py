"""One sweep through ktsweep (Ray + MLflow, model registered), as ``ktsweep run`` does it.

Prints one JSON line: seconds, best objective, trials, seconds spent writing to MLflow.
    python bench/ktsweep_sweep.py ROOT tuner=random sweep.max_trials=12 sweep.epochs=5
"""

from __future__ import annotations

import json
import sys
import time


def main(root: str, overrides: list[str]) -> None:
    started = time.perf_counter()
    from omegaconf import OmegaConf

    from ktsweep.search.config import compose, validate
    from ktsweep.search.sweep import run_sweep

    cfg = compose([f"sweep.root={root}", *overrides])
    outcome = run_sweep(validate(cfg), resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True))
    print(json.dumps({
        "seconds_inside": time.perf_counter() - started,
        "best": outcome.best_score,
        "trials": outcome.completed + outcome.failed,
        "tracking_seconds": outcome.tracking_seconds,
        "tracking_write_seconds": outcome.tracking_write_seconds,
        "wall_seconds": outcome.wall_seconds,
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
