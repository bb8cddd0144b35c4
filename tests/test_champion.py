"""The champion is visible in MLflow: ``ktsweep.champion=true`` on the run of the sweep whose model holds the
alias (moved with it, kept when ``if_better`` keeps the old model) and the registered model's description."""

from __future__ import annotations

from typing import Any

import pytest
from test_registry import BETTER, MEDIOCRE, ONE_TRIAL, WORSE

from ktsweep.tracking.records import TAG_CHAMPION

MODEL = "champion-test"
SWEEP = [o for o in ONE_TRIAL if not o.startswith("tracking.registered_model=")] + [
    f"tracking.registered_model={MODEL}", "sweep.report=false"]


@pytest.mark.slow
def test_champion_tag_moves_with_the_alias_and_stays_when_kept(run_sweep: Any, mlflow_client: Any) -> None:
    sweeps: list[Any] = []

    def champions() -> list[str]:
        return [s.name for s in sweeps if mlflow_client.get_run(s.parent_run_id).data.tags.get(TAG_CHAMPION) == "true"]

    sweeps.append(run_sweep(*SWEEP, *MEDIOCRE)[0])
    assert sweeps[0].promoted and champions() == [sweeps[0].name]
    sweeps.append(run_sweep(*SWEEP, *WORSE)[0])
    assert not sweeps[1].promoted and champions() == [sweeps[0].name]  # if_better kept the old one: so did the tag
    sweeps.append(run_sweep(*SWEEP, *BETTER)[0])
    assert sweeps[2].promoted and champions() == [sweeps[2].name]  # moved with the alias
    champion = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    assert mlflow_client.get_run(champion.tags["ktsweep.parent_run_id"]).data.tags[TAG_CHAMPION] == "true"
    description = mlflow_client.get_registered_model(MODEL).description
    assert f"`{sweeps[2].name}`" in description and "`val_accuracy`" in description
    assert f"{sweeps[2].best_score:.6g} (max)" in description and f"version {champion.version}" in description
