"""Search-space ranges, the building blocks of every HyperModel's schema."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from ktsweep.conf.schema.base import SAMPLINGS, check_bounds, one_of, require


@dataclass
class IntRange:
    """An integer hyperparameter: ``hp.Int(name, min, max, step)``."""

    min: int = MISSING
    max: int = MISSING
    step: int = 1
    default: Optional[int] = None

    def check(self) -> None:
        self.default = check_bounds(self.min, self.max, self.default)
        require(self.step >= 1, f"step must be >= 1; got step={self.step}")
        require(
            self.max == self.min or self.step <= self.max - self.min,
            f"step={self.step} is larger than the range {self.min}..{self.max}; use a smaller step",
        )


@dataclass
class FloatRange:
    """A float hyperparameter: ``hp.Float(name, min, max, sampling=...)``."""

    min: float = MISSING
    max: float = MISSING
    sampling: str = "linear"
    default: Optional[float] = None

    def check(self) -> None:
        one_of("sampling", self.sampling, SAMPLINGS)
        require(
            math.isfinite(self.min) and math.isfinite(self.max),
            f"range bounds must be finite; got {self.min}..{self.max}",
        )
        self.default = check_bounds(self.min, self.max, self.default)
        require(
            self.sampling == "linear" or self.min > 0,
            f"{self.sampling} sampling needs min > 0; got min={self.min} (use sampling=linear or a positive min)",
        )


@dataclass
class Choice:
    """A categorical hyperparameter: ``hp.Choice(name, values)``."""

    values: list[Any] = MISSING
    default: Optional[Any] = None

    def check(self) -> None:
        require(len(self.values) > 0, "a choice needs at least one value")
        require(
            len(set(self.values)) == len(self.values), f"choice values repeat: {self.values}"
        )
        if self.default is not None:
            require(
                self.default in self.values, f"default={self.default!r} is not in {self.values}"
            )
