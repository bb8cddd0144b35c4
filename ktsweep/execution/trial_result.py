"""How a trial's reports travel through Ray Tune: few numbers in the open, the rest as one JSON string.

Ray Tune keeps, for every trial for the whole sweep, running statistics (max, min, mean, last-5
and last-10 windows) of every number in every result it receives, and writes them into the
trial's JSON state. With every epoch metric, phase time and worker fact in the open that was
about 100 KB per trial, most of the driver's growth over a 1,000-trial sweep (bench/RESULTS.md,
section 8). Tune and the schedulers need only ``objective`` and ``epoch`` as numbers; everything
else numeric goes in ``DETAILS_KEY``, which the driver's readers unpack.
"""

from __future__ import annotations

import json
from numbers import Number
from typing import Any

DETAILS_KEY = "ktsweep/details"
# The keys of a trial's final report, which the searcher, the tracking callback and the progress read.
STATUS_KEY = "ktsweep/status"  # "ok" | "failed" | "fatal"
ERROR_KEY = "ktsweep/error"
BEST_PREFIX = "best/"  # metrics of the best epoch
BEST_EPOCH_KEY = "best_epoch"
HP_KEY = "ktsweep/hp"  # the trial's hyperparameters after fit(), as JSON (fit() may declare more)
STOPPED_EARLY_KEY = "stopped_early_at"  # the epoch after which a scheduler stopped the trial
IN_THE_OPEN = frozenset({"objective", "epoch"})  # what Ray Tune's schedulers and searcher judge


def pack(result: dict[str, Any]) -> dict[str, Any]:
    """The report as Ray Tune should see it: strings and ``IN_THE_OPEN`` as they are, the rest in JSON."""
    shown, details = {}, {}
    for key, value in result.items():
        if key in IN_THE_OPEN or not isinstance(value, (Number, dict)) or isinstance(value, bool):
            shown[key] = value
        else:
            details[key] = value
    if details:
        shown[DETAILS_KEY] = json.dumps(details, default=_plain)
    return shown


def _plain(value: Any) -> Any:
    """NumPy scalars (a ``fit()`` that returns them) as Python numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def unpack(result: dict[str, Any]) -> dict[str, Any]:
    """A result as the trainable reported it (one that was never packed comes back as it is)."""
    details = result.get(DETAILS_KEY)
    if not isinstance(details, str):
        return result
    return {**{k: v for k, v in result.items() if k != DETAILS_KEY}, **json.loads(details)}
