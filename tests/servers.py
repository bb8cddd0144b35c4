"""Processes the tests start (an MLflow server, Ray nodes), always stopped by the tests, even on failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (the server and the workers it forked) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite store and served artifacts; can be stopped and restarted."""

    def __init__(self, folder: Path, port: int = 0, workers: int = 1) -> None:
        self.folder = folder
        self.workers = workers  # the tests' default 1 keeps the machine light; ``mlflow server`` starts 4
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"), "--serve-artifacts", "--workers", str(self.workers),
        ]
        log = open(self.folder / "server.log", "ab")
        # Without MLflow's job runner (three more processes importing MLflow, for GenAI jobs): the
        # tracking and registry API ktsweep uses is the same, and each start is lighter and sooner up.
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True,
                                     env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
                                          "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        try:
            self.wait_until_up(timeout)
        except BaseException:  # never left running when it did not come up (or the caller gave up)
            self.stop()
            raise
        return self

    def wait_until_up(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc is not None and self.proc.poll() is None, (self.folder / "server.log").read_text()[-2000:]
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.3)
        raise TimeoutError(f"mlflow server did not answer on {self.uri} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def client(self) -> "PatientClient":
        """The test's own client of this server (its reads checking what a sweep stored)."""
        return PatientClient(self.uri)


class PatientClient:
    """An ``MlflowClient`` whose calls are sent again when the connection drops under them.

    uvicorn closes a keep-alive connection after 5 s idle; a request sent just as it does
    meets "Remote end closed connection without response", and with ktsweep's
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` (set in this process by the in-process sweeps)
    MLflow does not resend it. ktsweep's own writer goes offline and replays its journal;
    a test's reads, made between subprocesses of several seconds, are simply sent again.
    """

    TRIES = 3

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(uri)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            from mlflow.exceptions import MlflowException

            for attempt in range(self.TRIES):
                try:
                    return attr(*args, **kwargs)
                except MlflowException as exc:  # a dropped connection, not an answer from the server
                    if "Max retries exceeded" not in str(exc) or attempt == self.TRIES - 1:
                        raise
                    time.sleep(0.5)

        return call


@contextlib.contextmanager
def mlflow_server(folder: Path, workers: int = 1, timeout: float = 90) -> Iterator[MlflowServer]:
    server = MlflowServer(folder, workers=workers).start(timeout)
    try:
        yield server
    finally:
        server.stop()


# Ray 2.60 turns on token authentication for new local clusters; this loopback cluster
# opts out (the processes that talk to it get the same setting through ``env``).
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class RayCluster:
    """A Ray cluster of two nodes on 127.0.0.1, each its own ``ray start --block`` process group.

    Its own ``--temp-dir`` keeps it apart from the test session's Ray (a plain
    ``ray.init()`` would otherwise join it), and stopping kills only its processes
    (``ray stop`` would kill every Ray on the machine).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []
        # Ray's unix sockets live below --temp-dir and must fit in 107 characters: keep it short.
        self.temp_dir = tempfile.mkdtemp(prefix="ktsr-", dir="/tmp")

    def _start_node(self, args: list[str], log: str) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        out = open(self.folder / log, "ab")
        env = {**os.environ, **CLUSTER_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        env.pop("RAY_ADDRESS", None)
        # Every agent port of its own: the defaults (e.g. the dashboard agent's 52365) may be
        # held by the test session's Ray, and a node whose agent cannot bind takes no jobs.
        ports = [f"--{name}={free_port()}" for name in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
            "runtime-env-agent-port", "ray-client-server-port")]
        self.procs.append(subprocess.Popen([ray, "start", "--block", "--node-ip-address=127.0.0.1", *ports, *args],
                                           stdout=out, stderr=out, start_new_session=True, env=env))

    def start(self, timeout: float = 120) -> "RayCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start_node(["--head", f"--port={self.port}", "--num-cpus=1", '--resources={"head_node": 1}',
                          f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
                          "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"], "head.log")
        self.wait_for_nodes(1, timeout)
        self._start_node([f"--address={self.address}", "--num-cpus=1", '--resources={"second_node": 1}'], "node2.log")
        self.wait_for_nodes(2, timeout)
        return self

    def wait_for_nodes(self, count: int, timeout: float) -> None:
        from ray.util.state import list_nodes

        deadline = time.time() + timeout
        while time.time() < deadline:
            for proc in self.procs:
                assert proc.poll() is None, self.logs()
            with contextlib.suppress(Exception):  # the dashboard is still starting
                if sum(n.state == "ALIVE" for n in list_nodes(address=self.dashboard, timeout=5)) >= count:
                    return
            time.sleep(1)
        raise TimeoutError(f"the Ray cluster did not reach {count} nodes in {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in self.folder.glob("*.log"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def ray_cluster(folder: Path) -> Iterator[RayCluster]:
    cluster = RayCluster(folder)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
