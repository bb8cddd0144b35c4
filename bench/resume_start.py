"""How long ``ktsweep resume`` takes to start training again on a large sweep.

Gives the finished sweep room for two more trials (its saved ``sweep.max_trials``), runs
``ktsweep resume``, and reads from MLflow when the first new trial's run started.
    .venv/bin/python bench/resume_start.py ROOT SWEEP      # e.g. a store of bench/driver_per_trial.py --root
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def main(root: str, sweep: str) -> None:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(root))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    before = {run.info.run_id for run in find_runs(client, experiment, sweep=sweep, kind="trial")}
    saved = Path(root, "sweeps", sweep, "overrides.json")
    overrides = [o for o in json.loads(saved.read_text()) if not o.startswith("sweep.max_trials=")]
    saved.write_text(json.dumps([*overrides, f"sweep.max_trials={len(before) + 2}"]))
    started = time.time()
    done = subprocess.run([str(Path(sys.executable).with_name("ktsweep")), "resume", sweep, "--root", root],
                          capture_output=True, text=True)
    gone = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"ktsweep resume failed:\n{done.stderr[-3000:]}")
    new = [run for run in find_runs(client, experiment, sweep=sweep, kind="trial") if run.info.run_id not in before]
    first = min(run.info.start_time for run in new) / 1000 - started
    print(f"{len(before)} trials done, {len(new)} new: first new trial started after {first:.1f} s; "
          f"process gone after {gone:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
