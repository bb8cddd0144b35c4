"""What the CLI prints: one-line errors and the end-of-sweep summary."""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from ktsweep.core.outcome import SweepOutcome

DEBUG_ENV = "KTSWEEP_DEBUG"


def fail(exc: BaseException, code: int = 2) -> NoReturn:
    """Print one line naming the problem (the traceback too with --debug) and exit."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc)
    print(f"ktsweep: error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def print_offline_outcome(outcome: "SweepOutcome") -> None:
    """The summary when MLflow cannot be read: counts from the oracle, then what to run."""
    best = "-" if outcome.best_score is None else f"{outcome.best_score:.4f} (trial {outcome.best_trial_id})"
    print(
        f"{outcome.status} in {outcome.wall_seconds:.0f}s: {outcome.completed} completed, {outcome.failed} failed; "
        f"best {outcome.objective} {best}"
    )
    print(f"ktsweep: error: {outcome.unsynced}", file=sys.stderr, flush=True)


def print_outcome(outcome: "SweepOutcome", top: int = 10) -> None:
    from mlflow import MlflowClient

    from ktsweep.dashboards.leaderboard import rich_table, trials_frame

    console = console_for_tables()
    frame, objective, _ = trials_frame(MlflowClient(outcome.tracking_uri), outcome.experiment_id, outcome.name)
    console.print(rich_table(frame, title=f"sweep {outcome.name}: top {min(top, len(frame))} of {len(frame)} trials", top=top))
    best = "-" if outcome.best_score is None else f"{outcome.best_score:.4f} (trial {outcome.best_trial_id})"
    if outcome.already_finished:
        console.print(
            f"[bold]{outcome.status}[/] already: sweep {outcome.name} had nothing left to try, so nothing was "
            f"trained ({outcome.completed} completed, {outcome.failed} failed; best {objective} {best}); "
            "raise sweep.max_trials to go on, or use sweep.overwrite=true to start afresh"
        )
    else:
        console.print(
            f"[bold]{outcome.status}[/] in {outcome.wall_seconds:.0f}s: {outcome.completed} completed, "
            f"{outcome.failed} failed; best {objective} {best}"
        )
    if outcome.test_metrics:
        console.print(f"test set{f' ({outcome.final})' if outcome.final else ''}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.test_metrics.items())))
    if outcome.error:
        console.print(f"[red]stopped:[/] {outcome.error}")
    if outcome.model_version:
        state = "is the champion" if outcome.promoted else "registered; champion kept"
        console.print(
            f"model: {outcome.registered_model} version {outcome.model_version} {state} ({outcome.promotion}); "
            f"pull it: ktsweep pull {outcome.name} --out DIR"
        )
    elif outcome.promotion:
        console.print(f"model: {outcome.promotion}")
    console.print(f"MLflow tracking URI: {outcome.tracking_uri}")
    console.print(f"open the UI:  ktsweep ui {outcome.name}   (this sweep's run; `ktsweep ui`: every sweep)")


def console_for_tables() -> "Console":
    """A console wide enough for leaderboards, also when output goes to a file or CI log."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)
