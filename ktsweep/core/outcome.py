"""What a sweep produced, whether it finished, failed or was stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SweepOutcome:
    """What a finished (or stopped) sweep produced; the CLI prints it."""

    name: str
    status: str  # FINISHED | FAILED | KILLED
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    objective: str
    direction: str
    completed: int
    failed: int
    wall_seconds: float
    tracking_seconds: float  # the sweep waiting on tracking (writes themselves run on a thread)
    tracking_write_seconds: float = 0.0  # time in MLflow calls, on the writer thread
    best_trial_id: Optional[str] = None
    best_score: Optional[float] = None
    model_version: Optional[str] = None
    registered_model: Optional[str] = None
    promoted: bool = False
    promotion: str = ""
    test_metrics: dict[str, float] = field(default_factory=dict)
    pareto_front: list[dict] = field(default_factory=list)  # with sweep.objectives: {"trial_id", "values"} per trial
    final: str = ""  # how the tested, published model was made (publish.final_summary)
    error: Optional[str] = None
    already_finished: bool = False  # resumed a sweep that had nothing left to try: nothing was trained
    unsynced: Optional[str] = None  # MLflow stopped answering: what is kept where, and the sync command
