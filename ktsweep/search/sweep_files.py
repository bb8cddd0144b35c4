"""Files a sweep keeps in its folder (``sweeps/NAME/``) so that it can be resumed by name."""

from __future__ import annotations

import json
import os
from datetime import datetime

from ktsweep.conf.schema import Config
from ktsweep.search.errors import UsageError


OVERRIDES_FILE = "overrides.json"


def sweep_name(config: Config, strategy: str) -> str:
    if config.sweep.name:
        return config.sweep.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{config.data.name}-{strategy}-{stamp}"



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
    path = os.path.join(sweep_dir, "attempts")
    count = len(open(path).read().split()) if os.path.exists(path) else 0
    with open(path, "a") as fh:
        fh.write(f"ray-{count}\n")
    return count
