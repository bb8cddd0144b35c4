"""What makes a sweep the same search: its resolved config, less the settings that do not change
what a trial means.

A sweep's name is its identity. Its folder keeps the resolved config it started with
(``sweep_folder.SEARCH_FILE``); a later run under the same name resumes it only when the search
is the same, and says which keys differ otherwise. Settings that only change how or where trials
run (verbosity, the report, concurrency, the cluster, the budget, what happens after the search)
may change between runs; the MLflow store may not, since the sweep's records are there.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Keys (or prefixes, ending in ".") that may differ between runs of one sweep.
FREE_KEYS = (
    "sweep.name", "sweep.root", "sweep.verbose", "sweep.report", "sweep.code_dir", "sweep.max_trials",
    "sweep.trial_checkpoint_every", "sweep.overwrite", "sweep.final.", "sweep.callbacks.tensorboard",
    "sweep.callbacks.model_checkpoint", "tuner.max_trials", "tuner.max_retries_per_trial",
    "tuner.max_consecutive_failed_trials", "executor.", "tracking.",
    "scheduler.max_t", "scheduler.tuner", "scheduler.epochs", "scheduler.retrain", "scheduler.population",  # copies, compared there
    "tuner.objectives",  # a copy of sweep.objectives
    "sweep.select",  # which trial of a Pareto front is published: decided after the search
    "data.cache_dir",  # where a download is kept
    "data.load_in",  # where the same data is loaded (the driver or each worker)
    "backend",  # Keras' backend: the same search on another engine (saved models load on any)
)
OFF = (None, False, 0, "", [], {})  # a key a newer ktsweep added, at its default, is no difference
# Where the sweep's records are: compared on their own, with their own message.
STORE_KEYS = ("tracking.uri", "tracking.experiment")
SHOWN = 4  # differing keys named in the one line; the rest are counted


def as_plain(node: Any) -> Any:
    """A config tree (dataclasses, a user group's namespaces, lists) as JSON data."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return {f.name: as_plain(getattr(node, f.name)) for f in dataclasses.fields(node)}
    if hasattr(node, "__dict__") and not isinstance(node, type):
        return {key: as_plain(value) for key, value in vars(node).items()}
    if isinstance(node, dict):
        return {str(key): as_plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [as_plain(value) for value in node]
    return node if node is None or isinstance(node, (bool, int, float, str)) else str(node)


def flat(plain: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values (a Choice's values are one setting)."""
    out: dict[str, Any] = {}
    for key, value in plain.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{path}."))
        else:
            out[path] = value
    return out


def _free(key: str) -> bool:
    return any(key == free or (free.endswith(".") and key.startswith(free)) for free in FREE_KEYS)


def search_keys(plain: dict[str, Any]) -> dict[str, Any]:
    """The keys that define what a trial means, with their values."""
    return {key: value for key, value in flat(plain).items() if not _free(key)}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every search key that differs (``(none)`` where one side lacks it)."""
    before, after = search_keys(stored), search_keys(current)
    keys = [key for key in sorted(before.keys() | after.keys())
            if (json.dumps(before.get(key), sort_keys=True, default=str) != json.dumps(after.get(key), sort_keys=True, default=str)
                or (key in before) != (key in after))
            and not (key not in before and after[key] in OFF)]
    # Another class (``tuner._target_``) brings other options: the class is the difference worth naming.
    replaced = [key[: -len("_target_")] for key in keys if key.endswith("._target_")]
    keys = [key for key in keys if key.endswith("._target_") or not key.startswith(tuple(replaced))]
    return [f"{key}: {_shown(before.get(key, '(none)'))} -> {_shown(after.get(key, '(none)'))}" for key in keys]


def summary(changed: list[str]) -> str:
    """The differing keys for one line: the first few, then how many more."""
    more = len(changed) - SHOWN
    return "; ".join(changed[:SHOWN]) + (f"; and {more} more" if more > 0 else "")


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
