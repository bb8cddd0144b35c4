"""``ktsweep sync``: hand MLflow the records a sweep kept while it could not reach it.

The sweep's own config (``overrides.json``, as ``resume`` uses) says where its
MLflow is. Replaying is idempotent (see ``ktsweep.tracking.journal``), so running sync
twice, or after the sweep reconnected by itself, records nothing twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ktsweep.core.errors import UsageError


@dataclass(frozen=True)
class Synced:
    sweep: str
    records: int
    uri: str
    needs_close: bool  # the outage left the sweep's run open: resume closes (and publishes) it

    def summary(self) -> str:
        done = f"sent {self.records} kept records" if self.records else "no kept records to send"
        then = "; closing the sweep (best model, report)" if self.needs_close else ""
        return f"sync {self.sweep}: {done} to {self.uri}{then}"


def sync_journal(root: str, sweep: str) -> Synced:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.core.sweep_folder import load_overrides
    from ktsweep.tracking.journal import Journal, Target
    from ktsweep.tracking.records import TAG_STATUS, connect, find_runs, local_uri

    config = validate(compose(load_overrides(root, sweep)))
    root = os.path.abspath(config.sweep.root)
    uri = config.tracking.uri or local_uri(root)
    client, experiment_id = connect(uri, config.tracking.experiment, root=root)
    parents = find_runs(client, experiment_id, sweep=sweep, kind="sweep")
    if not parents:
        raise UsageError(f"MLflow at {uri} has no run for sweep {sweep!r}; is this the server the sweep used?")
    parent = parents[0]
    journal = Journal(os.path.join(root, "sweeps", sweep))
    records = journal.replay(client, Target(experiment_id, parent.info.run_id, sweep))
    return Synced(sweep, records, uri, needs_close=parent.data.tags.get(TAG_STATUS) == "running")
