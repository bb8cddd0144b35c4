"""A user's own code (``build_model``, a HyperModel, a data loader) importable wherever trials run.

Keras Tuner users keep their model in the project folder (``user_models.py``) and
run from there. The driver puts that folder (``sweep.code_dir``, default the
working folder) on ``sys.path``. Objects sent to Ray workers travel wrapped in
``WithCodeDir``: unpickling it first puts the same folder on the worker's path,
then loads the object, so a local Ray started by anyone (ktsweep, a notebook's
own ``ray.init()``, a test session) imports the user's modules. On a cluster the
folder does not exist on other nodes; Ray's runtime env ships it (``working_dir``).
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable, Optional

# Not shipped to a cluster with the user's code: sweep outputs, environments, VCS data.
WORKING_DIR_EXCLUDES = ["ktsweep-runs/", ".venv/", "venv/", ".git/", "__pycache__/", "outputs/", "multirun/", "*.keras"]


def code_dir(configured: Optional[str]) -> str:
    return os.path.abspath(os.path.expanduser(configured or os.getcwd()))


def add_to_path(configured: Optional[str]) -> str:
    """Make the user's folder importable in this process (first on the path, as ``python script.py`` does)."""
    folder = code_dir(configured)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return folder


def module_root(obj: Any) -> Optional[str]:
    """The folder from which the module defining ``obj`` (a function, class or instance) is imported;
    None for ``__main__`` (a notebook: pickled by value) and for installed packages."""
    import inspect

    named = inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)
    name = (getattr(obj, "__module__", None) if named else None) or type(obj).__module__
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not path or name == "__main__" or "site-packages" in path or "dist-packages" in path:
        return None
    root = os.path.dirname(os.path.abspath(path))
    depth = name.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)
    for _ in range(depth):
        root = os.path.dirname(root)
    return root


class WithCodeDir:
    """Pickles ``obj`` so that unpickling returns ``obj`` itself, after making ``folder`` importable."""

    def __init__(self, obj: Any, folder: str) -> None:
        self.obj = obj
        self.folder = folder

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        import cloudpickle

        return _load_with_code_dir, (self.folder, cloudpickle.dumps(self.obj))


def _load_with_code_dir(folder: str, payload: bytes) -> Any:
    import pickle

    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.insert(0, folder)
    return pickle.loads(payload)


def runtime_env_for_cluster(folder: str) -> dict[str, Any]:
    """Ship the user's folder to every node, unless this driver runs inside a Ray job that ships one
    (``ktsweep submit --working-dir``): Ray refuses two working dirs for one job."""
    import json

    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    if (job.get("runtime_env") or {}).get("working_dir") or not has_python_code(folder):
        return {}
    return {"working_dir": folder, "excludes": WORKING_DIR_EXCLUDES}


def has_python_code(folder: str) -> bool:
    """Only a folder with the user's modules is worth shipping (a sweep run from an empty folder is not)."""
    with os.scandir(folder) as entries:
        return any(e.name.endswith(".py") or (e.is_dir() and os.path.exists(os.path.join(e.path, "__init__.py")))
                   for e in entries)


def accepted(fn: Callable, available: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``available`` that ``fn`` names as parameters (following ``**kwargs`` up a class's bases)."""
    names: set[str] = set()
    owners = [c.__init__ for c in fn.__mro__] if inspect.isclass(fn) else [fn]
    for owner in owners:
        try:
            params = inspect.signature(owner).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            break
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return {key: value for key, value in available.items() if key in names}
