"""Each sweep's data is an MLflow dataset input on its run and on every trial's run, told apart by digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ktsweep.tracking.dataset_input import TAG_SPLITS
from ktsweep.tracking.records import find_runs

CSV_SWEEP = ["data=csv", "data.target=price", "hypermodel=mlp_regressor", "sweep.max_trials=2", "sweep.epochs=1",
             "hypermodel.space.n_hidden.max=1", "tracking.register=false", "sweep.report=false"]


def write_table(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    size = rng.normal(100, 20, 120)
    pd.DataFrame({"size": size, "rooms": rng.integers(1, 6, 120).astype(float), "city": rng.choice(["n", "s"], 120),
                  "price": size / 50 + rng.normal(0, 0.1, 120)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def two_csv_sweeps(run_sweep: Any, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, Path]]:
    folder = tmp_path_factory.mktemp("tables")
    sweeps = []
    for seed in (1, 2):
        path = write_table(folder / f"prices-{seed}.csv", seed)
        outcome, _ = run_sweep(*CSV_SWEEP, f"data.path={path}")
        sweeps.append((outcome, path))
    return sweeps


def test_parent_and_trials_have_the_csv_as_dataset_input(two_csv_sweeps: list[tuple[Any, Path]], mlflow_client: Any) -> None:
    outcome, path = two_csv_sweeps[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]  # what `sha256sum` prints, shortened
    runs = [mlflow_client.get_run(outcome.parent_run_id)]
    runs += find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    assert len(runs) == 3
    for run in runs:
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1, run.info.run_name
        dataset, tags = inputs[0].dataset, {t.key: t.value for t in inputs[0].tags}
        assert (dataset.name, dataset.digest, dataset.source_type) == ("csv", digest, "local")
        assert json.loads(dataset.source)["uri"] == str(path)
        columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
        assert columns == ["size", "rooms", "city_n", "city_s", "price"]  # features as the model sees them, then the target
        assert tags == {"mlflow.data.context": "training", TAG_SPLITS: "train=72, val=24, test=24"}


def test_two_files_have_two_digests(two_csv_sweeps: list[tuple[Any, Path]], mlflow_client: Any) -> None:
    digests = [mlflow_client.get_run(o.parent_run_id).inputs.dataset_inputs[0].dataset.digest for o, _ in two_csv_sweeps]
    assert digests[0] != digests[1]


def test_loader_data_gets_mlflows_digest_and_the_loader_as_source() -> None:
    from types import SimpleNamespace

    from mlflow.data.digest_utils import compute_pandas_digest

    from ktsweep.data.loaders import load_digits
    from ktsweep.tracking.dataset_input import describe_dataset

    data = load_digits(name="digits", val_fraction=0.2, test_fraction=0.2, seed=42)
    described = describe_dataset(SimpleNamespace(_target_="ktsweep.data.loaders.load_digits"), data)["dataset"]
    assert json.loads(described["source"]) == {"tags": {"mlflow.source.name": "ktsweep.data.loaders.load_digits"}}
    frame = pd.DataFrame(data.x_train, columns=list(data.feature_names)).assign(target=data.y_train)
    assert described["digest"] == compute_pandas_digest(frame)
    reordered = load_digits(name="digits", val_fraction=0.2, test_fraction=0.2, seed=7)
    assert describe_dataset(SimpleNamespace(_target_="x"), reordered)["dataset"]["digest"] != described["digest"]
