"""A run under an existing sweep name: resume it when the search is the same, refuse with the keys that
differ otherwise, or (``sweep.overwrite=true``) set the old sweep aside and start afresh.

Where a sweep's state lives, and which place is the reference for what (docs/DESIGN.md):
the sweep's folder (``sweeps/NAME/``: the oracle's state, the stored search, the overrides) decides
what the search is and what was tried; Ray's storage (``executor.storage_path``) holds the trials'
checkpoints, which can be lost and redone; MLflow holds the records, which are never deleted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.conf.identity import as_plain, differences, summary
from ktsweep.core.errors import UsageError
from ktsweep.core.sweep_folder import load_search, replaced_stamp, save_search, set_aside

if TYPE_CHECKING:
    from ktsweep.conf.schema import Config

ORACLE_FILE = os.path.join("oracle", "oracle.json")


@dataclass
class Reopened:
    """What ``reopen`` found: a sweep to resume, or one set aside under a new name."""

    resumed: bool = False
    aside: Optional[str] = None  # the old sweep's name once set aside (its folder and MLflow runs renamed)


def cli_ways_on(name: str) -> str:
    return (f"use a new sweep.name, `ktsweep resume {name}` (its stored config), or sweep.overwrite=true "
            "(sets the old sweep aside; nothing recorded is deleted)")


def reopen(config: "Config", *, name: str, sweep_dir: str, uri: str, local_uri: str, storage: str,
           ways_on: Optional[str] = None, overwrite: Optional[bool] = None) -> Reopened:
    """Compare this run with the sweep already under ``sweep_dir``, before anything is trained or recorded.

    ``uri`` is this run's MLflow store, ``local_uri`` the sweep root's own (``tracking.uri=""``);
    ``overwrite`` defaults to ``sweep.overwrite``; ``ways_on`` is what a refusal suggests (the CLI's by default).
    """
    record = load_search(sweep_dir)
    exists = record is not None or os.path.exists(os.path.join(sweep_dir, ORACLE_FILE))
    current = {"config": as_plain(config), "tracking_uri": config.tracking.uri, "experiment": config.tracking.experiment}
    if exists and (config.sweep.overwrite if overwrite is None else overwrite):
        aside = _set_aside(name, sweep_dir, storage)
        save_search(sweep_dir, current)
        return Reopened(aside=aside)
    if record is None:  # a new sweep, or one made before its search was kept: this run's is the reference
        save_search(sweep_dir, current)
        return Reopened(resumed=exists)
    stored_uri = record.get("tracking_uri") or local_uri
    if (stored_uri, record.get("experiment")) != (uri, config.tracking.experiment):
        raise UsageError(
            f"sweep {name} is recorded in MLflow at {stored_uri} (experiment {record.get('experiment')}), not at {uri} "
            f"(experiment {config.tracking.experiment}); pass tracking.uri={stored_uri} "
            f"tracking.experiment={record.get('experiment')}, or {ways_on or cli_ways_on(name)}"
        )
    changed = differences(record["config"], current["config"])
    if changed:
        raise UsageError(f"sweep {name} exists with another search ({summary(changed)}); {ways_on or cli_ways_on(name)}")
    return Reopened(resumed=True)


def _set_aside(name: str, sweep_dir: str, storage: str) -> str:
    """The old sweep's folder and its Ray storage moved to ``NAME.replaced-STAMP``."""
    stamp = replaced_stamp()
    if storage.rstrip("/") != sweep_dir.rstrip("/"):
        if "://" in storage:
            raise UsageError(
                f"sweep.overwrite=true cannot set aside the trial checkpoints at {storage} (remote storage); "
                "use a new sweep.name, or remove them first"
            )
        set_aside(storage, stamp)
    set_aside(sweep_dir, stamp)
    return f"{name}.replaced-{stamp}"


def trials_done(oracle: Any) -> str:
    """``2 of 4`` trials done (``2`` where the strategy cannot say how many it will run)."""
    from ktsweep.search.oracles import planned_trials

    done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
    planned = planned_trials(oracle)
    return f"{done} of {planned}" if planned else str(done)
