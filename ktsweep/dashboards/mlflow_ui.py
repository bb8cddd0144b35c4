"""``ktsweep ui``: MLflow's own server on the sweeps' store, and the address of the page that shows them.

MLflow 3.17's UI opens an experiment in the mode of its "GenAI / Model training" switch,
which it keeps in the browser (GenAI until changed) and which the ``workflowType`` query
parameter overrides; the experiment's ``mlflow.experimentKind`` tag does not choose it. So
the printed address carries ``workflowType=machine_learning``: it opens on the runs table,
sweeps as parent runs with their trials nested, not on the GenAI overview.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Optional

from ktsweep.core.errors import UsageError

MODEL_TRAINING_MODE = "workflowType=machine_learning"
START_SECONDS = 120.0  # a cold MLflow server on a busy 2-core machine takes ~10 s


def page_url(base: str, experiment_id: str, run_id: Optional[str] = None) -> str:
    """The experiment's runs table (or one sweep's run) in the UI's model-training mode."""
    path = f"experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/#/{path}?{MODEL_TRAINING_MODE}"


def local_host(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard address is not an address to open)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


SERVER_JOBS = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def check_port(host: str, port: int) -> None:
    """One line, before anything starts, when another program already listens on the port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(
            f"port {port} on {host} is taken ({exc.strerror or exc}); another MLflow UI may be running there: "
            f"open it, or pass --port with a free port"
        ) from None


def serve(store_uri: str, *, host: str, port: int, page: str, log_path: str, open_browser: bool) -> None:
    """Run ``mlflow server`` on the store until Ctrl-C (or SIGTERM); print ``page`` once it answers."""
    check_port(host, port)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
               "--host", host, "--port", str(port), "--workers", "1"]  # one user: one worker starts faster
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
           # MLflow's job runner (GenAI scorers, trace roll-ups; nothing a training run's page uses) starts
           # three more processes that each import MLflow: ~1.8 GB, and 3 s more to start (bench/RESULTS.md 3).
           SERVER_JOBS: os.environ.get(SERVER_JOBS, "false")}
    with open(log_path, "ab") as log:
        # Its own process group: MLflow starts uvicorn as a child, and stopping must reach both.
        server = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        wait_until_up(server, f"http://{local_host(host)}:{port}", log_path)
        show_page(page, open_browser)
        print(f"(store: {store_uri}; server log: {log_path}; Ctrl-C stops it)", flush=True)
        server.wait()
        raise UsageError(f"the MLflow server stopped (exit code {server.returncode}); see {log_path}")
    except KeyboardInterrupt:
        print("MLflow UI stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop(server)


def show_page(page: str, open_browser: bool) -> None:
    print(f"MLflow UI: {page}", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(page)


def wait_until_up(server: subprocess.Popen, base: str, log_path: str, timeout: float = START_SECONDS) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise UsageError(f"the MLflow server exited at start (code {server.returncode}): {_last_line(log_path)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.25)
    raise UsageError(f"the MLflow server did not answer on {base} within {timeout:.0f} s; see {log_path}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (MLflow and its uvicorn), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # a worker that outlived MLflow's own process


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _last_line(path: str) -> str:
    with contextlib.suppress(OSError):
        with open(path, errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
        if lines:
            return lines[-1][:300]
    return "no output"
