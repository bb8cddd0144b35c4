"""Read a local MLflow sqlite store without importing MLflow (``ktsweep list`` / ``show`` in ~1 s).

Importing MLflow costs about 2 s on this machine, more than the rest of ``list``
and ``show`` together. For the default store (a sqlite file under
``sweep.root``) this reader queries MLflow's tables directly, read-only, and
returns runs shaped like MLflow's (``run.info``, ``run.data.tags/params/metrics``
with the latest value of each metric), so the leaderboards need no second code
path. Any surprise (an older or newer schema) makes the caller fall back to
MLflow's own client.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class RunInfo:
    run_id: str
    status: str
    start_time: int


@dataclass
class RunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    info: RunInfo
    data: RunData


class SqliteRuns:
    """Read-only view of an MLflow sqlite store: experiments by name, runs by ktsweep tags."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def experiment_id(self, name: str) -> Optional[str]:
        row = self.db.execute(
            "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def find_runs(self, experiment_id: str, **tags: str) -> list[Run]:
        """Active runs of the experiment whose ``ktsweep.<key>`` tags equal the given values."""
        query = "SELECT run_uuid, status, start_time FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active'"
        args: list[Any] = [int(experiment_id)]
        for key, value in tags.items():
            query += " AND run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)"
            args += [f"ktsweep.{key}", value]
        runs = {
            run_id: Run(RunInfo(run_id, status, start_time or 0), RunData())
            for run_id, status, start_time in self.db.execute(query + " ORDER BY start_time DESC", args)
        }
        if not runs:
            return []
        marks = ",".join("?" * len(runs))
        ids = list(runs)
        for table, attribute in (("tags", "tags"), ("params", "params")):
            for run_id, key, value in self.db.execute(
                f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({marks})", ids
            ):
                getattr(runs[run_id].data, attribute)[key] = value
        for run_id, key, value, is_nan in self.db.execute(
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", ids
        ):
            runs[run_id].data.metrics[key] = float("nan") if is_nan else float(value)
        return list(runs.values())

    def close(self) -> None:
        self.db.close()
