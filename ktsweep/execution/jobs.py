"""Detached sweeps: ``ktsweep submit/status/logs/stop`` through Ray's job API.

A submitted sweep runs ``ktsweep run`` as a Ray job on the cluster's head node
(its driver), so the laptop that submitted it may go away. The config is
checked here first, so a bad override fails in seconds, not on the cluster.
The cluster's Python must have ktsweep installed; ``--working-dir`` uploads a
folder (your own HyperModels or configs) with the job.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterator, Optional

from ktsweep.core.errors import UsageError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # Ray's own variable for the job server (http://HOST:8265)
AGENT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Submitted:
    job_id: str
    sweep: str
    address: str

    def summary(self) -> str:
        return (
            f"submitted sweep {self.sweep} as Ray job {self.job_id} on {self.address}; "
            f"follow it: ktsweep logs {self.job_id} --follow --address {self.address}"
        )


def job_client(address: Optional[str]) -> "JobSubmissionClient":
    """The cluster's job server; one clear line when it does not answer."""
    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        raise UsageError(f"no job server address: pass --address http://HOST:8265 (or set {ADDRESS_ENV})")
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # connection refused, wrong scheme, no dashboard on the head
        detail = " ".join(str(exc).split())[:200]
        raise UsageError(
            f"cannot reach the Ray job server at {address} ({detail}); start the head with the dashboard "
            "(ray start --head --dashboard-host 0.0.0.0) and pass --address http://HOST:8265"
        ) from exc


def submit(overrides: list[str], *, address: Optional[str], working_dir: Optional[str] = None) -> Submitted:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.conf.schema.tuner import strategy_name

    if not any(o.startswith("sweep.name=") for o in overrides):  # name it here, so the user knows where to look
        config = validate(compose(overrides))
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        overrides = [*overrides, f"sweep.name={config.data.name}-{strategy_name(config.tuner._target_)}-{stamp}"]
    config = validate(compose(overrides))
    if not any(o.startswith("backend=") for o in overrides):  # the cluster's driver runs the Keras backend chosen here
        overrides = [*overrides, f"backend={config.backend}"]
    if working_dir and not os.path.isdir(working_dir):
        raise UsageError(f"--working-dir {working_dir} is not a folder")
    client = job_client(address)
    runtime_env = {"working_dir": os.path.abspath(working_dir)} if working_dir else None
    deadline = time.time() + AGENT_WAIT_SECONDS
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=shlex.join(["python", "-m", "ktsweep.cli.main", "run", *overrides]),
                runtime_env=runtime_env,
                metadata={"ktsweep.sweep": config.sweep.name},
            )
            return Submitted(job_id, config.sweep.name, client.get_address())
        except RuntimeError as exc:
            # A head that has just started (or is busy) has no job agent ready yet: Ray says to retry.
            if "No available agent" in str(exc) and time.time() < deadline:
                time.sleep(2)
                continue
            detail = " ".join(str(exc).split())[:300]
            raise UsageError(f"the Ray job server at {client.get_address()} refused the sweep ({detail})") from exc


def status_line(address: Optional[str], job_id: str) -> str:
    client = job_client(address)
    info = _job_info(client, job_id)
    sweep = (info.metadata or {}).get("ktsweep.sweep", "?")
    message = f": {' '.join(info.message.split())}" if info.message else ""
    return f"job {job_id} (sweep {sweep}) {info.status}{message}"


def logs(address: Optional[str], job_id: str, *, follow: bool) -> Iterator[str]:
    """The job's output so far, or (``follow``) as it is written until the job ends."""
    client = job_client(address)
    _job_info(client, job_id)
    if not follow:
        yield client.get_job_logs(job_id)
        return
    yield from _follow(client, job_id)


def _follow(client: "JobSubmissionClient", job_id: str) -> Iterator[str]:
    """Ray's log tail is an async iterator; drive it from this synchronous CLI."""
    import asyncio

    stream = client.tail_job_logs(job_id).__aiter__()
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def stop(address: Optional[str], job_id: str) -> str:
    client = job_client(address)
    _job_info(client, job_id)
    stopped = client.stop_job(job_id)
    return f"job {job_id}: " + ("stop requested" if stopped else "already finished")


def _job_info(client: "JobSubmissionClient", job_id: str):  # noqa: ANN202 - Ray's JobDetails
    try:
        return client.get_job_info(job_id)
    except Exception as exc:  # Ray raises RuntimeError for an unknown id
        raise UsageError(f"no Ray job {job_id!r} on {client.get_address()}; `ray job list` shows the jobs") from exc
