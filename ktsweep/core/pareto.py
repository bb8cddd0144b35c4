"""Several objectives at once: which trials no other trial beats on every objective (the Pareto front),
the front's knee, its hypervolume, and the rule that picks the published trial.

Pure functions over ``{name: value}`` points, so the sweep's close, the report, ``ktsweep show``,
the Python API's result and the benchmark compute the same front from the same numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

Point = Mapping[str, float]

# Measured by the worker on the trained model, not by Keras: both are smaller-is-better.
MODEL_METRICS = ("params", "latency_ms")


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "min" or "max"

    def signed(self, value: float) -> float:
        """The value as a minimisation: larger is worse whatever the direction."""
        return value if self.direction == "min" else -value


def parse_objectives(entries: Sequence[str]) -> list[Objective]:
    """Validated "name:direction" entries (``sweep.objectives``, the sweep run's tag) as Objectives."""
    return [Objective(*entry.split(":", 1)) for entry in entries if entry]


def dominates(a: Point, b: Point, objectives: Sequence[Objective]) -> bool:
    """``a`` is no worse than ``b`` on every objective and better on one."""
    better = False
    for objective in objectives:
        x, y = objective.signed(a[objective.name]), objective.signed(b[objective.name])
        if x > y:
            return False
        better = better or x < y
    return better


def complete(point: Point, objectives: Sequence[Objective]) -> bool:
    return all(isinstance(point.get(o.name), (int, float)) and math.isfinite(point[o.name]) for o in objectives)


def pareto_front(points: Sequence[Point], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the points no other point dominates, in their order (points missing a value are out)."""
    valid = [i for i, p in enumerate(points) if complete(p, objectives)]
    return [i for i in valid if not any(dominates(points[j], points[i], objectives) for j in valid if j != i)]


def _normalised(points: Sequence[Point], objectives: Sequence[Objective]) -> list[list[float]]:
    """Each objective as a minimisation scaled to [0, 1] over ``points`` (a constant one is 0)."""
    columns = []
    for objective in objectives:
        values = [objective.signed(p[objective.name]) for p in points]
        low, high = min(values), max(values)
        columns.append([(v - low) / (high - low) if high > low else 0.0 for v in values])
    return [list(row) for row in zip(*columns)]


def knee_order(points: Sequence[Point], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the front, nearest the ideal point first: each objective scaled to [0, 1] over the
    front, the ideal point being the best of each. The first is the front's knee, the balanced trade-off."""
    front = pareto_front(points, objectives)
    if not front:
        return []
    scaled = _normalised([points[i] for i in front], objectives)
    distance = {i: math.sqrt(sum(v * v for v in row)) for i, row in zip(front, scaled)}
    return sorted(front, key=lambda i: (distance[i], i))


def hypervolume(points: Sequence[Point], objectives: Sequence[Objective], reference: Point) -> float:
    """The volume the front dominates up to ``reference`` (a point worse than every point of interest),
    in the objectives' own units: larger is better. Exact, by slicing along the first objective."""
    ref = [o.signed(reference[o.name]) for o in objectives]
    rows = [[o.signed(points[i][o.name]) for o in objectives] for i in pareto_front(points, objectives)]
    return _volume([r for r in rows if all(v < bound for v, bound in zip(r, ref))], ref)


def _volume(rows: list[list[float]], ref: list[float]) -> float:
    if not rows:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(r[0] for r in rows)
    rows = sorted(rows, key=lambda r: r[0])
    total = 0.0
    for k, row in enumerate(rows):
        upper = rows[k + 1][0] if k + 1 < len(rows) else ref[0]
        if upper > row[0]:  # the slab [row[0], upper) is dominated by the rows up to k in the other objectives
            total += (upper - row[0]) * _volume([r[1:] for r in rows[: k + 1]], ref[1:])
    return total


# -- the rule that picks the published trial -------------------------------------------------------

RULE = re.compile(r"^\s*(?:(knee)|(max|min)\s+([\w/.-]+)(?:\s+where\s+(.+?))?)\s*$", re.IGNORECASE)
CONDITION = re.compile(r"^\s*([\w/.-]+)\s*(<=|>=|<|>|==)\s*([-+0-9.eE]+)\s*$")
COMPARE = {"<=": float.__le__, ">=": float.__ge__, "<": float.__lt__, ">": float.__gt__, "==": float.__eq__}


@dataclass(frozen=True)
class Selection:
    """``knee``, or ``max|min METRIC [where METRIC OP NUMBER [and ...]]``."""

    text: str
    direction: Optional[str]  # None: the knee
    metric: Optional[str]
    conditions: tuple[tuple[str, str, float], ...]

    @property
    def names(self) -> list[str]:
        return [n for n in [self.metric, *(c[0] for c in self.conditions)] if n]

    def allows(self, point: Point) -> bool:
        return all(isinstance(point.get(name), (int, float)) and COMPARE[op](float(point[name]), bound)
                   for name, op, bound in self.conditions)

    def rank(self, points: Sequence[Point], objectives: Sequence[Objective]) -> list[int]:
        """The points this rule would publish, best first: the knee's order over the front, or the
        points meeting the conditions by the named metric (ties: by the objectives in order, then the
        earlier point, so a tie never puts a dominated point first)."""
        if self.direction is None:
            return knee_order(points, objectives)
        metric = self.metric
        eligible = [i for i, p in enumerate(points) if complete(p, objectives) and self.allows(p)
                    and isinstance(p.get(metric), (int, float)) and math.isfinite(p[metric])]
        sign = -1.0 if self.direction == "max" else 1.0
        return sorted(eligible, key=lambda i: (sign * float(points[i][metric]),
                                               *(o.signed(float(points[i][o.name])) for o in objectives), i))


def parse_selection(text: str) -> Selection:
    """The rule from its text; ValueError with what a rule looks like."""
    match = RULE.match(text or "")
    if not match:
        raise ValueError(f"cannot read the rule {text!r}; write knee, or max|min METRIC [where METRIC <= NUMBER [and ...]]")
    if match.group(1):
        return Selection(text.strip(), None, None, ())
    conditions = []
    for part in re.split(r"\s+and\s+", match.group(4) or "", flags=re.IGNORECASE) if match.group(4) else []:
        condition = CONDITION.match(part)
        if not condition:
            raise ValueError(f"cannot read the condition {part!r} in {text!r}; write METRIC <= NUMBER (or <, >=, >, ==)")
        conditions.append((condition.group(1), condition.group(2), float(condition.group(3))))
    return Selection(text.strip(), match.group(2).lower(), match.group(3), tuple(conditions))
