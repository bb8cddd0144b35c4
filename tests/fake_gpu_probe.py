"""Trial workers given a share of a (fake) GPU: what each applies, on the backend in ``KERAS_BACKEND``.

Starts a Ray head that claims two GPUs (Ray's fake resources: this machine may have none), runs one
small ``ktsweep run`` per ``executor.gpus_per_trial`` value given, through ``executor.address=auto``
(the cluster path: the workers' environment travels in ``runtime_env``), and leaves the trials' records
in ROOT's MLflow store for ``tests/test_backends.py``.

    KERAS_BACKEND=jax python tests/fake_gpu_probe.py ROOT 0.5 1 0
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = ["sweep.max_trials=2", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=16",
        "tracking.register=false", "sweep.report=false", "executor.address=auto"]


def main(root: str, shares: list[str]) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    ktsweep = str(Path(sys.executable).with_name("ktsweep"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": f"127.0.0.1:{port}"}  # private, short-lived
    temp = tempfile.mkdtemp(prefix="ktsg-")  # short: Ray's socket paths live below it
    subprocess.run([ray, "start", "--head", "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false",
                    "--disable-usage-stats", f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}"],
                   env=env, capture_output=True, text=True, check=True)
    try:
        for share in shares:  # one driver each: a driver's runtime_env is fixed when it joins
            done = subprocess.run([ktsweep, "run", *TINY, f"sweep.root={root}", f"sweep.name=gpu-{share}",
                                   f"executor.gpus_per_trial={share}"], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"gpus_per_trial={share}: {done.stderr[-2000:]}")
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
