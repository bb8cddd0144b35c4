"""What every schema node shares: the config error and the checks that word its messages."""

from __future__ import annotations

from typing import Any, Optional

DIRECTIONS = ("max", "min")
SAMPLINGS = ("linear", "log", "reverse_log")


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and what to use."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    require(value in allowed, f"{key} must be one of {', '.join(allowed)}; got {key}={value!r}")


def check_bounds(low: float, high: float, default: Optional[float]) -> Optional[float]:
    """Check a range; return its default moved into the range.

    Narrowing a range (``n_hidden.max=1``) should not also demand a new default:
    the default is a starting point, not a constraint, so it is clamped.
    """
    require(low <= high, f"range min={low} is above max={high}; swap them")
    return None if default is None else min(max(default, low), high)


def at_least(key: str, value: float, minimum: float) -> None:
    """The most common check of all: a count or a factor with a floor."""
    require(value >= minimum, f"{key} must be >= {minimum:g}; got {value}")
