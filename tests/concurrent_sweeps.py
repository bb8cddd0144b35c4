"""Several ``ktsweep run`` processes against one MLflow server at once, and what each left there.

Shared by tests/test_concurrent_server.py (2 sweeps x 20 trials) and bench/server_load.py
(4 x 50): launch the sweeps as users do (one ``ktsweep run`` each, each with its own local
Ray), wait for them, then audit the server sweep by sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from servers import stop

REPO = Path(__file__).resolve().parent.parent
# Trivial trials (bench/cases.py "overhead"): 1 epoch, one small layer, 10% of digits to train on.
TRIVIAL = [
    "tuner=random", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=16",
    "data.val_fraction=0.1", "data.test_fraction=0.8", "sweep.report=false",
]


@dataclass
class Launched:
    """One ``ktsweep run`` process and what it printed."""

    name: str
    proc: subprocess.Popen
    log: Path
    started: float
    ended: Optional[float] = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.time()) - self.started

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def ktsweep_run(root: Path, uri: str, name: str, trials: int, *extra: str) -> Launched:
    """Start ``ktsweep run`` as a user would, in its own process group (its Ray included), logging to a file."""
    ktsweep = Path(sys.executable).with_name("ktsweep")
    command = [str(ktsweep), "run", *TRIVIAL, f"sweep.max_trials={trials}", f"sweep.root={root}",
               f"sweep.name={name}", "tracking=server", f"tracking.uri={uri}", *extra]
    log = root / f"{name}.log"
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return Launched(name, proc, log, time.time())


def run_all(launched: list[Launched], timeout: float) -> None:
    """Wait for every sweep; whatever happens, none of their processes (Ray's included) is left running."""
    deadline = time.time() + timeout
    try:
        for item in launched:
            item.proc.wait(timeout=max(1.0, deadline - time.time()))
            item.ended = time.time()
    finally:
        for item in launched:
            stop(item.proc)


@dataclass
class Audit:
    """What the server holds for one sweep."""

    name: str
    parent_runs: int = 0
    parent_status: str = ""
    trials: int = 0  # trial runs under the parent
    finished: int = 0
    failed: int = 0
    duplicate_names: list[str] = field(default_factory=list)
    duplicate_trial_ids: list[str] = field(default_factory=list)
    duplicate_steps: list[tuple[str, str, int]] = field(default_factory=list)  # (run name, metric, step)
    best: Optional[float] = None
    promotion: str = ""
    champion_tag: str = ""
    version: Optional[str] = None

    def lost(self, planned: int) -> int:
        return max(0, planned - self.finished)


def audit(client: Any, experiment_id: str, name: str, *, model: Optional[str] = None) -> Audit:
    """Count one sweep's runs on the server: parent, trial runs, duplicates, metric steps, promotion."""
    from ktsweep.tracking.records import TAG_CHAMPION, TAG_TRIAL, find_runs

    result = Audit(name)
    parents = find_runs(client, experiment_id, sweep=name, kind="sweep")
    result.parent_runs = len(parents)
    if not parents:
        return result
    parent = parents[0]
    result.parent_status = parent.info.status
    result.best = parent.data.metrics.get("best_objective")
    result.promotion = parent.data.tags.get("ktsweep.promotion", "")
    result.champion_tag = parent.data.tags.get(TAG_CHAMPION, "")
    runs = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=5000)
    result.trials = len(runs)
    result.finished = sum(r.info.status == "FINISHED" for r in runs)
    result.failed = sum(r.info.status == "FAILED" for r in runs)
    result.duplicate_names = [n for n, c in Counter(r.info.run_name for r in runs).items() if c > 1]
    result.duplicate_trial_ids = [t for t, c in Counter(r.data.tags.get(TAG_TRIAL) for r in runs).items() if c > 1]
    for run in runs:
        for key in run.data.metrics:
            steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            result.duplicate_steps += [(run.info.run_name, key, s) for s, c in steps.items() if c > 1]
    if model:
        found = client.search_model_versions(f"name = '{model}' and run_id = '{parent.info.run_id}'")
        result.version = str(found[0].version) if len(found) == 1 else (f"{len(found)} versions" if found else None)
    return result
