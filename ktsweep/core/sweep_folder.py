"""Files a sweep keeps in its folder (``sweeps/NAME/``) so that it can be resumed by name."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.core.errors import UsageError

if TYPE_CHECKING:
    from ktsweep.conf.schema import Config


OVERRIDES_FILE = "overrides.json"
# The resolved config the sweep started with and the MLflow store it is recorded in: the reference a later
# run under the same name is compared with (``ktsweep.conf.identity``).
SEARCH_FILE = "search.json"
ATTEMPTS_FILE = "attempts"  # one line per Ray experiment of the sweep (ray-0, ray-1, ...)


def sweep_name(config: Config, strategy: str) -> str:
    """The configured name, or a fresh one from the time, claimed by creating its folder: two
    sweeps started in the same millisecond under one root must not share a folder (and a run)."""
    if config.sweep.name:
        return config.sweep.name
    sweeps = os.path.join(os.path.abspath(config.sweep.root), "sweeps")
    os.makedirs(sweeps, exist_ok=True)
    while True:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        name = f"{config.data.name}-{strategy}-{stamp}"
        try:
            os.mkdir(os.path.join(sweeps, name))
            return name
        except FileExistsError:  # taken by a sweep started at the same moment: the next millisecond
            time.sleep(0.001)


def save_overrides(sweep_dir: str, overrides: list[str]) -> None:
    """Keep the command's overrides beside the sweep: ``ktsweep resume`` composes them again."""
    path = os.path.join(sweep_dir, OVERRIDES_FILE)
    if os.path.exists(path):
        return  # a resumed sweep keeps its original command
    with open(f"{path}.tmp", "w") as fh:
        json.dump(overrides, fh)
    os.replace(f"{path}.tmp", path)


def load_overrides(root: str, name: str) -> list[str]:
    path = os.path.join(os.path.abspath(root), "sweeps", name, OVERRIDES_FILE)
    if not os.path.exists(path):
        raise UsageError(f"no sweep named {name!r} under {os.path.abspath(root)}; `ktsweep list` shows the sweeps")
    with open(path) as fh:
        return json.load(fh)


def next_attempt(sweep_dir: str) -> int:
    """Each run or resume of a sweep is a new Ray experiment ``ray-N``; counted locally, whatever the storage."""
    path = os.path.join(sweep_dir, ATTEMPTS_FILE)
    count = len(open(path).read().split()) if os.path.exists(path) else 0
    with open(path, "a") as fh:
        fh.write(f"ray-{count}\n")
    return count


def load_search(sweep_dir: str) -> Optional[dict[str, Any]]:
    """The sweep's stored search (``save_search``), or None for a new sweep or one made before it was kept."""
    path = os.path.join(sweep_dir, SEARCH_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:  # a file cut short or edited by hand
        record, detail = None, " ".join(str(exc).split())[:120]
    else:
        detail = "" if isinstance(record, dict) and isinstance(record.get("config"), dict) else "no search in it"
    if detail:
        raise UsageError(f"{path} is not a sweep's search ({detail}): restore it, or remove it and this run's "
                         "search becomes the sweep's, or use a new sweep.name")
    return record


def save_search(sweep_dir: str, record: dict[str, Any]) -> None:
    os.makedirs(sweep_dir, exist_ok=True)
    path = os.path.join(sweep_dir, SEARCH_FILE)
    with open(f"{path}.tmp", "w") as fh:
        json.dump(record, fh, indent=1, default=str)
    os.replace(f"{path}.tmp", path)


def set_aside(folder: str, stamp: str) -> Optional[str]:
    """Move a folder to ``FOLDER.replaced-STAMP`` (nothing is deleted); its new path, or None if it did not exist."""
    if not os.path.exists(folder):
        return None
    aside = f"{folder.rstrip(os.sep)}.replaced-{stamp}"
    os.replace(folder, aside)
    return aside


def rename_overrides(sweep_dir: str, name: str) -> None:
    """A sweep set aside under a new name resumes under it: ``ktsweep resume NEW_NAME`` composes this file."""
    path = os.path.join(sweep_dir, OVERRIDES_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            overrides = [o for o in json.load(fh) if not o.startswith("sweep.name=")]
        with open(f"{path}.tmp", "w") as fh:
            json.dump([*overrides, f"sweep.name={name}"], fh)
        os.replace(f"{path}.tmp", path)


def replaced_stamp() -> str:
    """The suffix of a sweep set aside by ``sweep.overwrite=true`` (a valid ``sweep.name``)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")
