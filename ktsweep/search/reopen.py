"""A run under an existing sweep name: resume it when the search is the same, refuse with the keys that
differ otherwise, or (``sweep.overwrite=true``) set the old sweep aside and start afresh.

Where a sweep's state lives, and which place is the reference for what (docs/DESIGN.md):
the sweep's folder (``sweeps/NAME/``: the oracle's state, the stored search, the overrides) decides
what the search is and what was tried; Ray's storage (``executor.storage_path``) holds the trials'
checkpoints, which can be lost and redone; MLflow holds the records, which are never deleted.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ktsweep.conf.identity import as_plain, differences, summary
from ktsweep.core.errors import UsageError
from ktsweep.core.sweep_folder import (
    ATTEMPTS_FILE,
    OVERRIDES_FILE,
    load_search,
    rename_overrides,
    replaced_stamp,
    save_search,
    set_aside,
)

if TYPE_CHECKING:
    from ktsweep.conf.schema import Config

ORACLE_FILE = os.path.join("oracle", "oracle.json")


@dataclass
class Reopened:
    """What ``reopen`` found: a sweep to resume, and an old one set aside whose MLflow runs are still to rename."""

    resumed: bool = False
    # the old sweep set aside: {"name": NAME.replaced-STAMP, "tracking_uri": ..., "experiment": ...}, kept in
    # the new record until its MLflow runs are renamed (a run that fails before that renames them next time)
    replaces: Optional[dict[str, Any]] = None


def cli_ways_on(name: str) -> str:
    return (f"use a new sweep.name, `ktsweep resume {name}` (its stored config), or sweep.overwrite=true "
            "(sets the old sweep aside; nothing recorded is deleted)")


def reopen(config: "Config", *, name: str, sweep_dir: str, uri: str, local_uri: str,
           storage_of: Callable[[Optional[str]], str], ways_on: Optional[str] = None,
           overwrite: Optional[bool] = None) -> Reopened:
    """Compare this run with the sweep already under ``sweep_dir``, before anything is trained or recorded.

    ``uri`` is this run's MLflow store, ``local_uri`` the sweep root's own (``tracking.uri=""``);
    ``storage_of`` gives the Ray storage of an ``executor.storage_path`` setting; ``overwrite`` defaults to
    ``sweep.overwrite``; ``ways_on`` is what a refusal suggests (the CLI's by default).
    """
    record = load_search(sweep_dir)
    # Trials were started (its Ray experiment made) or one has ended (the oracle saved itself); else the run
    # stopped in its set-up (bad data, MLflow or Ray unreachable), and its config is no reference.
    started = any(os.path.exists(os.path.join(sweep_dir, path)) for path in (ORACLE_FILE, ATTEMPTS_FILE))
    current = {"config": as_plain(config), "tracking_uri": config.tracking.uri, "experiment": config.tracking.experiment}
    if record is not None and not started:  # its first run stopped before any trial ended: nothing to keep to
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(sweep_dir, OVERRIDES_FILE))  # nor to resume with: this run's command is kept
        current["replaces"] = record.get("replaces")
        save_search(sweep_dir, current)
        return Reopened(replaces=current["replaces"])
    stored_uri = (record or {}).get("tracking_uri") or local_uri
    if started and (config.sweep.overwrite if overwrite is None else overwrite):
        stored = (record or current)["config"]
        aside = _set_aside(name, sweep_dir, storage_of((stored.get("executor") or {}).get("storage_path")))
        current["replaces"] = {"name": aside, "tracking_uri": stored_uri,
                               "experiment": (record or current)["experiment"]}
        save_search(sweep_dir, current)
        return Reopened(replaces=current["replaces"])
    if record is None:  # a new sweep, or one made before its search was kept: this run's is the reference
        save_search(sweep_dir, current)
        return Reopened(resumed=started)
    if (stored_uri, record.get("experiment")) != (uri, config.tracking.experiment):
        raise UsageError(
            f"sweep {name} is recorded in MLflow at {stored_uri} (experiment {record.get('experiment')}), not at {uri} "
            f"(experiment {config.tracking.experiment}); pass tracking.uri={stored_uri} "
            f"tracking.experiment={record.get('experiment')}, or {ways_on or cli_ways_on(name)}"
        )
    changed = differences(record["config"], current["config"])
    if changed:
        raise UsageError(f"sweep {name} exists with another search ({summary(changed)}); {ways_on or cli_ways_on(name)}")
    return Reopened(resumed=True, replaces=record.get("replaces"))


def renamed(sweep_dir: str) -> None:
    """The old sweep's MLflow runs carry its new name: nothing is left to do for it."""
    record = load_search(sweep_dir)
    if record is not None and record.pop("replaces", None) is not None:
        save_search(sweep_dir, record)


def _set_aside(name: str, sweep_dir: str, storage: str) -> str:
    """The old sweep's folder and its Ray storage moved to ``NAME.replaced-STAMP``; it resumes under that name."""
    stamp = replaced_stamp()
    if storage.rstrip("/") != sweep_dir.rstrip("/"):
        if "://" in storage:
            raise UsageError(
                f"sweep.overwrite=true cannot set aside the trial checkpoints at {storage} (remote storage); "
                "use a new sweep.name, or remove them first"
            )
        set_aside(storage, stamp)
    aside = set_aside(sweep_dir, stamp)
    rename_overrides(aside, f"{name}.replaced-{stamp}")
    return f"{name}.replaced-{stamp}"


def trials_done(oracle: Any) -> str:
    """``2 of 4`` trials done (``2`` where the strategy cannot say how many it will run)."""
    from ktsweep.search.oracles import planned_trials

    done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
    planned = planned_trials(oracle)
    return f"{done} of {planned}" if planned else str(done)
