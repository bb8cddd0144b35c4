"""A new local MLflow store starts as a copy of an empty one, made once per MLflow version.

MLflow sets up a new sqlite store by creating its tables and then running every Alembic
migration since its first schema: 1-2 s of CPU on the path of each sweep that starts in
a new folder (bench/RESULTS.md, 1e), while TensorFlow's imports compete for the same
cores. The result depends only on the MLflow version, so the first set-up on a machine
is kept in the user's cache (``$XDG_CACHE_HOME/ktsweep``, else ``~/.cache/ktsweep``) and
copied from then on. The copy holds tables only, no experiment: MLflow adds its
``Default`` experiment when it first opens the copy, with that store's own artifact
location, exactly as for a store it created itself. Any failure here falls back to
MLflow's own set-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

log = logging.getLogger(__name__)


def template_path() -> str:
    import mlflow

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ktsweep", f"mlflow-{mlflow.__version__}-empty.db")


def seed_new_store(db_path: str) -> bool:
    """Give a store that does not exist yet the cached empty schema; True when it was copied.

    The caller holds the store's lock (``records.store_lock``), so no one opens it meanwhile.
    """
    if os.path.exists(db_path) and os.path.getsize(db_path) > 0:
        return False
    staged = f"{db_path}.seed"
    try:
        template = template_path()
        if not os.path.exists(template):
            _build(template)
        shutil.copyfile(template, staged)
        os.replace(staged, db_path)
        return True
    except Exception as exc:  # a read-only cache, a full disk, a changed MLflow internal: MLflow sets it up
        log.debug("no MLflow store template (%s); MLflow creates the store itself", exc)
        with contextlib.suppress(OSError):
            os.remove(staged)  # a copy cut short by a full disk
        return False


def _build(template: str) -> None:
    """MLflow's own table creation and migrations, into a file renamed into place when whole."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    os.makedirs(os.path.dirname(template), exist_ok=True)
    handle, staged = tempfile.mkstemp(dir=os.path.dirname(template), suffix=".db.tmp")
    os.close(handle)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{staged}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(staged, template)  # two sweeps building at once: either whole file wins
    finally:
        if os.path.exists(staged):
            os.remove(staged)
