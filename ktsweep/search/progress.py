"""Live sweep progress: a rich status line on a terminal, plain lines in CI logs."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional

from ray.tune import Callback
from rich.console import Console

from ktsweep.execution.trial_result import STATUS_KEY


class SweepProgress(Callback):
    """Counts trials and tracks the best objective as results stream in."""

    def __init__(self, *, total: Optional[int], objective: str, direction: str, console: Optional[Console] = None) -> None:
        self.total = total
        self.objective = objective
        self.sign = 1.0 if direction == "max" else -1.0
        self.console = console or Console(stderr=False)
        self.started = time.time()
        self.done = 0
        self.failed = 0
        self.running = 0
        self.best: Optional[float] = None
        self._status = None
        self._closed = False

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment state; a live display does not pickle.
        return {key: value for key, value in self.__dict__.items() if key not in ("console", "_status")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = Console()
        self._status = None

    # -- Ray Tune callback hooks -----------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running += 1
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, trial.last_result or {})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, {STATUS_KEY: "failed"})

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    # -- display ---------------------------------------------------------

    def _ended(self, trial: Any, result: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        value = result.get("objective")
        ok = result.get(STATUS_KEY) == "ok" and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok:
            self.failed += 1
        elif self.best is None or self.sign * value > self.sign * self.best:
            self.best = float(value)
        kt_id = trial.config.get("kt_trial_id", trial.trial_id)
        outcome = f"{self.objective}={value:.4f}" if ok else "FAILED"
        if not self.console.is_terminal:
            print(f"[{self.line()}] trial {kt_id} {outcome}", flush=True)
        self._refresh()

    def line(self) -> str:
        total = "?" if self.total is None else str(self.total)
        best = "-" if self.best is None else f"{self.best:.4f}"
        elapsed = time.time() - self.started
        eta = ""
        if self.total and self.done:
            eta = f" eta {max(0.0, elapsed / self.done * (self.total - self.done)):.0f}s"
        return (
            f"trials {self.done}/{total} running {self.running} failed {self.failed} "
            f"best {self.objective} {best} elapsed {elapsed:.0f}s{eta}"
        )

    def _refresh(self) -> None:
        if not self.console.is_terminal:
            return
        if self._status is None:
            self._status = self.console.status(self.line())
            self._status.start()
        else:
            self._status.update(self.line())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._status is not None:
            self._status.stop()
            self._status = None
        print(f"done: {self.line()}", file=sys.stdout, flush=True)
