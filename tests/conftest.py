"""Shared fixtures: one Ray instance and one MLflow store per test session."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(scope="session")
def ray_session() -> Any:
    """One local Ray for the whole session: sweeps reuse it (start-up is paid once)."""
    import ray

    from ktsweep.execution.cluster import WORKER_ENV

    pythonpath = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**WORKER_ENV, "PYTHONPATH": pythonpath}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep root (one sqlite MLflow store) shared by the session's sweeps."""
    return tmp_path_factory.mktemp("ktsweep-runs")


@pytest.fixture(scope="session")
def run_sweep(ray_session: Any, store_root: Path) -> Callable[..., Any]:
    """Compose a config from overrides (as the CLI would) and run it; returns (outcome, config)."""
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.flow import run_sweep as run

    def _run(*overrides: str) -> tuple[Any, Any]:
        name = f"t-{uuid.uuid4().hex[:8]}"
        args = [f"sweep.root={store_root}", f"sweep.name={name}", *overrides]
        cfg = compose(args)
        config = validate(cfg)
        return run(config, resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True), overrides=args), config

    return _run


@pytest.fixture(scope="session")
def mlflow_client(store_root: Path) -> Any:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import local_uri

    return MlflowClient(local_uri(str(store_root)))


sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def housing() -> Any:
    """California housing (the copy bundled with ktsweep), split as the wide & deep tests expect."""
    from test_wide_deep import SPLIT

    from ktsweep.data.loaders import load_california_housing

    return load_california_housing(name="housing", **SPLIT)
