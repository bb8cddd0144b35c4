"""Inputs that can only be checked when a sweep starts: one clear line, nothing trained."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from ktsweep.core.errors import UsageError


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (lambda tmp: ["tracking=server", f"tracking.uri=http://127.0.0.1:{closed_port()}"],
         r"cannot reach the MLflow tracking store at http://127\.0\.0\.1:\d+ .*start the server or use tracking=local"),
        (lambda tmp: ["data=california_housing", f"data.path={tmp}/nope.csv"],
         r"data file not found: .*nope\.csv; set data\.path"),
        (lambda tmp: ["data=california_housing", f"data.path={tmp}/empty.csv"], r"empty\.csv has no rows"),
        (lambda tmp: ["data=california_housing", f"data.path={tmp}/no_target.csv"],
         r"no_target\.csv lacks column\(s\) median_house_value"),
        (lambda tmp: ["executor.cpus_per_trial=4"], r"executor\.cpus_per_trial=4 is more than the cluster's 2 CPU; "),
        (lambda tmp: ["executor.gpus_per_trial=0.5"], r"executor\.gpus_per_trial=0\.5 is more than the cluster's 0 GPU"),
        (lambda tmp: ["+executor.resources_per_trial.big_mem=1"],
         r"executor\.resources_per_trial\.big_mem=1 is more than the cluster's 0 big_mem; .*add nodes that have it"),
    ],
    ids=["mlflow-unreachable", "data-missing", "data-empty", "target-column-missing", "too-many-cpus", "no-gpu",
         "unknown-resource"],
)
def test_bad_runtime_input(overrides: Any, message: str, run_sweep: Any, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("longitude,latitude\n")
    (tmp_path / "no_target.csv").write_text(
        "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,median_income\n"
        "-122.2,37.9,41,880,129,322,126,8.3\n"
    )
    with pytest.raises(UsageError, match=message) as info:
        run_sweep(*overrides(tmp_path))
    assert "\n" not in str(info.value)
