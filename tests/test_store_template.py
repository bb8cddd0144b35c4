"""A new local MLflow store is a copy of one cached empty schema: no migrations on each sweep's path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ktsweep.tracking import store_template
from ktsweep.tracking.records import connect, local_uri


def _experiments(db: Path | str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM experiments ORDER BY experiment_id")]


def _open(root: Path) -> tuple:
    return connect(local_uri(str(root)), "ktsweep", root=str(root))


def test_new_stores_are_copies_of_one_cached_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.store.db.utils as db_utils

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _open(tmp_path / "a")  # the first store on this "machine" builds the template
    template = store_template.template_path()
    assert template.startswith(str(tmp_path / "cache"))
    assert _experiments(template) == []  # tables only: MLflow adds its Default experiment to each store
    with sqlite3.connect(template) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == db_utils._get_latest_schema_revision()

    def no_set_up(engine: object) -> None:
        raise AssertionError("MLflow migrated a new store that the template should have given")

    monkeypatch.setattr(db_utils, "_initialize_tables", no_set_up)
    client, experiment_id = _open(tmp_path / "b")
    assert _experiments(tmp_path / "b" / "mlflow.db") == ["Default", "ktsweep"]
    assert client.get_experiment(experiment_id).artifact_location == f"file://{tmp_path / 'b' / 'mlartifacts'}"
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "val_loss", 0.5, step=1)
    assert client.get_metric_history(run.info.run_id, "val_loss")[0].value == 0.5

    assert store_template.seed_new_store(str(tmp_path / "b" / "mlflow.db")) is False  # a store in use stays
    assert _experiments(tmp_path / "b" / "mlflow.db") == ["Default", "ktsweep"]


def test_an_unusable_cache_leaves_the_set_up_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file-not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    (tmp_path / "c").mkdir()
    assert store_template.seed_new_store(str(tmp_path / "c" / "mlflow.db")) is False
    client, experiment_id = _open(tmp_path / "c")
    assert client.get_experiment(experiment_id).name == "ktsweep"


def test_a_copy_cut_short_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "d"
    folder.mkdir()

    def full_disk(source: str, target: str) -> None:
        Path(target).write_bytes(b"part of a store")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_template.shutil, "copyfile", full_disk)
    assert store_template.seed_new_store(str(folder / "mlflow.db")) is False
    assert list(folder.iterdir()) == []  # MLflow then creates the store itself, from nothing
