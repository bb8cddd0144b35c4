"""GPUs shared between trials: the same sweep at 1, 0.5 and 0.25 GPU per trial, on each installed backend.

Each run is a fresh ``ktsweep run`` (its own local Ray), with ``executor.gpus_per_trial`` set and as
many trials at once as the GPUs allow (``max_concurrent`` = GPUs / share), one CPU each. Prints a
markdown table: trials per minute (from the sweep's own wall time), each trial's peak GPU memory as
its worker reports it (``ktsweep.worker.gpu_peak_mb``: TensorFlow's and PyTorch's allocator peaks
since the previous trial of that worker, JAX's since the worker started) and the trials that failed
(an out-of-memory shows there, with its message).

    .venv/bin/python bench/gpu.py [--trials 8] [--epochs 5] [--backends tensorflow,jax,torch] [OVERRIDE ...]

On a machine without an NVIDIA GPU it says so in one line and exits 0. TensorFlow's CPU wheel
(``tensorflow-cpu``, the project's pin) sees no GPU: install ``tensorflow[and-cuda]`` at the same
version to measure it; a backend that sees no GPU is listed as such and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KTSWEEP = Path(sys.executable).with_name("ktsweep")
SHARES = (1.0, 0.5, 0.25)
# A model big enough that a GPU is worth it, on data that ships with scikit-learn (no download).
SWEEP = ["tuner=random", "hypermodel.space.n_neurons.min=256", "hypermodel.space.n_neurons.max=1024",
         "hypermodel.space.n_hidden.min=2", "hypermodel.space.n_hidden.max=4", "sweep.batch_size=64",
         "sweep.report=false", "tracking.register=false", "executor.cpus_per_trial=1"]
SEES_GPU = {
    "tensorflow": "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))",
    "jax": "import jax; print(len([d for d in jax.devices() if d.platform == 'gpu']))",
    "torch": "import torch; print(torch.cuda.device_count())",
}


def gpus_on_machine() -> int:
    """NVIDIA GPUs, counted without importing any backend."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    done = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines()) if done.returncode == 0 else 0


def gpus_seen_by(backend: str) -> int:
    done = subprocess.run([sys.executable, "-c", SEES_GPU[backend]], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        return int(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return 0


def run(backend: str, share: float, gpus: int, trials: int, epochs: int, overrides: list[str]) -> dict:
    concurrent = max(1, int(gpus / share))
    with tempfile.TemporaryDirectory(prefix="ktsweep-gpu-") as root:
        command = [str(KTSWEEP), "run", *SWEEP, f"sweep.max_trials={trials}", f"sweep.epochs={epochs}",
                   f"executor.gpus_per_trial={share}", f"executor.max_concurrent={concurrent}",
                   f"sweep.root={root}", "sweep.name=gpu", *overrides]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)})
        seconds = time.perf_counter() - started
        row = {"backend": backend, "share": share, "concurrent": concurrent, "command_s": seconds,
               "exit": done.returncode, **records(root)}
        if done.returncode not in (0, 1) and not row["trials"]:
            row["error"] = " ".join(done.stderr.split())[-300:]
        return row


def records(root: str) -> dict:
    import mlflow

    from ktsweep.tracking.records import find_runs, local_uri

    client = mlflow.MlflowClient(local_uri(root))
    experiment = client.get_experiment_by_name("ktsweep")
    if experiment is None:
        return {"trials": 0, "completed": 0, "wall_s": float("nan"), "peaks": [], "errors": []}
    trials = find_runs(client, experiment.experiment_id, sweep="gpu", kind="trial")
    parent = find_runs(client, experiment.experiment_id, sweep="gpu", kind="sweep")
    completed = [t for t in trials if t.data.tags.get("ktsweep.status") == "COMPLETED"]
    return {
        "trials": len(trials),
        "completed": len(completed),
        "wall_s": parent[0].data.metrics.get("wall_seconds", float("nan")) if parent else float("nan"),
        "peaks": [float(t.data.tags["ktsweep.worker.gpu_peak_mb"]) for t in trials if "ktsweep.worker.gpu_peak_mb" in t.data.tags],
        "errors": sorted({t.data.tags.get("ktsweep.error", "")[:120] for t in trials if t not in completed} - {""}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    gpus = gpus_on_machine()
    if not gpus:
        print("bench/gpu.py: no NVIDIA GPU on this machine (nvidia-smi lists none); run it on one with a GPU")
        return
    rows, skipped = [], []
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None or not gpus_seen_by(backend):
            skipped.append(backend)
            continue
        for share in SHARES:
            rows.append(run(backend, share, gpus, args.trials, args.epochs, args.overrides))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{gpus} GPU(s); {args.trials} trials x {args.epochs} epochs each; backends that see no GPU, skipped: "
          f"{', '.join(skipped) or 'none'}\n")
    print("| backend | GPU per trial | at once | completed / trials | sweep wall (s) | trials per minute "
          "| peak GPU MB per trial (median / max) | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = 60 * r["completed"] / r["wall_s"] if r["wall_s"] == r["wall_s"] and r["wall_s"] > 0 else float("nan")
        peaks = f"{statistics.median(r['peaks']):.0f} / {max(r['peaks']):.0f}" if r["peaks"] else "-"
        failures = "; ".join(r["errors"]) or r.get("error", "") or "-"
        print(f"| {r['backend']} | {r['share']:g} | {r['concurrent']} | {r['completed']} / {r['trials']} "
              f"| {r['wall_s']:.1f} | {rate:.1f} | {peaks} | {failures} |")


if __name__ == "__main__":
    main()
