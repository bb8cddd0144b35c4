"""Population Based Training, the trial's side: explore (perturb the hyperparameters that may change
during training) and exploit (continue from a stronger trial's weights and optimizer state).

The driver's scheduler (``search/schedulers.py``, ``EpochPBT``) decides; it writes an exploit request
into the weak trial's folder while that trial waits in ``tune.report`` for the decision (as a stop
request, ``trial_checkpoint.request_stop``). The trial reads it after that epoch, ends ``fit``,
and continues in the same worker process: the donor's architecture, its weights and optimizer
state (its step count and moments, not its learning rate: that is a perturbed hyperparameter),
the perturbed values, and ``fit`` again from the next epoch. Ray never pauses or restarts the trial.

Perturbations follow Ray Tune's PBT, on Keras Tuner's spaces: with ``resample_probability`` a value
is drawn afresh from its hyperparameter's prior; else a number is multiplied by 0.8 or 1.2 (then
clipped to its range and snapped to its step), and a Choice moves to a neighbouring value.
A Boolean changes only when resampled.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Optional

from ktsweep.core.errors import FatalError

FACTORS = (0.8, 1.2)
LEARNING_RATE_NAMES = ("learning_rate", "lr")  # mutable by default wherever they are declared (suffixes count)


def is_learning_rate(name: str) -> bool:
    return any(name == known or name.endswith(f"_{known}") for known in LEARNING_RATE_NAMES)


def mutable_names(values: dict[str, Any], *, mutable: Optional[list[str]], fixed: list[str],
                  space: Optional[list[str]] = None) -> list[str]:
    """Which of a trial's hyperparameters an exploit may perturb: the user's list (each must be in the
    space: a typo would silently perturb nothing; one a condition turned off is left alone), or those
    not declared by ``build()`` (``fixed``: fit()'s) plus the learning rate. Keras Tuner's own
    ``tuner/*`` values never change. ``space``: every name declared, active or not (default: ``values``)."""
    names = [name for name in values if not name.startswith("tuner/")]
    if mutable is not None:
        declared = set(values) | set(space or [])
        missing = [name for name in mutable if name not in declared]
        if missing:
            raise FatalError(
                f"scheduler.mutable names {', '.join(missing)}, which the search space does not declare "
                f"(it has {', '.join(sorted(names))}); fix scheduler.mutable"
            )
        return [name for name in mutable if name in values]
    return [name for name in names if name not in set(fixed) or is_learning_rate(name)]


def explore(hp: Any, names: list[str], rng: random.Random, resample_probability: float) -> dict[str, tuple[Any, Any]]:
    """Perturb ``names`` in ``hp`` (a ``keras_tuner.HyperParameters``, changed in place); return
    ``{name: (old, new)}`` for the values that changed."""
    changes: dict[str, tuple[Any, Any]] = {}
    for name in names:
        if name not in hp.values or not hp.is_active(name):  # a conditional one its condition turned off
            continue
        definition = next(h for h in hp.space if h.name == name and hp.is_active(h))
        old = hp.values[name]
        new = _perturbed(definition, old, rng, resample_probability)
        if new != old:
            hp.values[name] = new
            changes[name] = (old, new)
    return changes


def _perturbed(definition: Any, value: Any, rng: random.Random, resample_probability: float) -> Any:
    kind = type(definition).__name__
    if kind == "Fixed":
        return value
    if rng.random() < resample_probability:
        return definition.random_sample(rng.randint(0, 2**31 - 1))
    if kind == "Boolean":
        return value
    if kind == "Choice":
        choices = list(definition.values)
        index = choices.index(value) if value in choices else 0
        return choices[min(max(index + rng.choice((-1, 1)), 0), len(choices) - 1)]
    if kind in ("Int", "Float"):
        return _in_range(definition, value * rng.choice(FACTORS), integer=kind == "Int")
    return value  # a hyperparameter type of the user's own: left as it is


def _in_range(definition: Any, value: float, *, integer: bool) -> Any:
    """Clipped to the hyperparameter's range, on its step grid (from its minimum, as Keras Tuner samples)."""
    low, high, step = definition.min_value, definition.max_value, definition.step
    value = min(max(value, low), high)
    if step and definition.sampling == "linear":
        value = min(low + round((value - low) / step) * step, high)
    elif step and definition.sampling == "log":  # a log step is a factor
        value = min(low * step ** round(math.log(value / low, step)), high)
    return int(round(value)) if integer else float(value)


def hp_json(hp: Any) -> str:
    return json.dumps(hp.get_config())
