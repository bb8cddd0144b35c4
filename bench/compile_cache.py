"""JAX's persistent compilation cache in ktsweep's workers: the same sweep with it off, on in a new root
(cold), and on again in that root (warm: a second sweep of the same search, as a user iterating).

Each run is a fresh ``ktsweep run`` process on JAX (``KERAS_BACKEND=jax`` is set here). Prints wall
time, and from each trial's run the seconds JAX spent tracing and compiling
(``ktsweep.worker.compile_seconds``) and its persistent-cache hits, as medians per trial.
    .venv/bin/python bench/compile_cache.py [CASE ...]   (cases from bench/cases.py; default digits_hyperband digits_random)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def sweep(root: str, name: str, overrides: list[str]) -> dict:
    import mlflow

    from ktsweep.tracking.records import find_runs, local_uri

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / "ktsweep_sweep.py"), root, f"sweep.name={name}", *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    client = mlflow.MlflowClient(local_uri(root))
    runs = find_runs(client, client.get_experiment_by_name("ktsweep").experiment_id, sweep=name, kind="trial")
    tags = [run.data.tags for run in runs]
    return {"seconds": seconds, "trials": len(runs),
            "compile": statistics.median(float(t["ktsweep.worker.compile_seconds"]) for t in tags),
            "trial": statistics.median(run.data.metrics["trial_seconds"] for run in runs),
            "hits": statistics.median(int(t["ktsweep.worker.compile_cache_hits"]) for t in tags)}


def main(cases: list[str]) -> None:
    print("| case | cache | wall (s) | trials | median trial (s) | median compile per trial (s) | median cache hits per trial |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        with tempfile.TemporaryDirectory() as off_root, tempfile.TemporaryDirectory() as on_root:
            runs = [("off", sweep(off_root, "off", [*CASES[case], "executor.compilation_cache=false"])),
                    ("on, new root", sweep(on_root, "cold", CASES[case])),
                    ("on, same root again", sweep(on_root, "warm", CASES[case]))]
        for label, r in runs:
            print(f"| {case} | {label} | {r['seconds']:.1f} | {r['trials']} | {r['trial']:.2f} | {r['compile']:.2f} "
                  f"| {r['hits']:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["digits_hyperband", "digits_random"])
