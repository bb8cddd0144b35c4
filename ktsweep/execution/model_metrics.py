"""What deploying a trial's model costs, measured in the worker once the trial has trained: the
built-in objectives ``params`` (its parameter count) and ``latency_ms`` (a batch of one, predicted)."""

from __future__ import annotations

import statistics
import time
from typing import Any

LATENCY_WARMUP = 3  # calls before timing: the first traces and compiles the predict step
LATENCY_CALLS = 25  # timed calls; the median is reported


def latency_ms(model: Any, x_row: Any) -> float:
    """Median wall time of ``predict_on_batch`` on one example, in milliseconds, on this worker's
    share of the machine (so compare trials of one sweep, not sweeps on other machines)."""
    for _ in range(LATENCY_WARMUP):
        model.predict_on_batch(x_row)
    times = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        model.predict_on_batch(x_row)
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def measure(model: Any, x_row: Any, names: tuple[str, ...]) -> dict[str, float]:
    """The model metrics among ``names`` (the sweep's objectives)."""
    measured: dict[str, float] = {}
    if "params" in names:
        measured["params"] = float(model.count_params())
    if "latency_ms" in names:
        measured["latency_ms"] = latency_ms(model, x_row)
    return measured
