"""Which Keras backend a sweep runs on: chosen as Keras chooses it, once per process, before Keras is imported.

Keras reads ``KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json`` (``~/.keras``), else
TensorFlow, when it is first imported, and cannot switch afterwards. ktsweep follows the same
rule in the user's process (the CLI, a notebook) and lets ``backend=`` override it; the choice is
then put in ``KERAS_BACKEND`` so every Ray worker imports Keras on the same backend
(``execution/worker_backend.py``). Nothing here imports Keras.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata, util
from typing import Optional

from ktsweep.core.errors import UsageError

BACKENDS = ("tensorflow", "jax", "torch")
ENV = "KERAS_BACKEND"
# The distribution that carries each backend, and the extra that installs it.
DISTRIBUTIONS = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax",), "torch": ("torch",)}
EXTRAS = {"tensorflow": "ktsweep", "jax": "ktsweep[jax]", "torch": "ktsweep[torch]"}


def keras_default() -> str:
    """The backend Keras would pick in this process: ``KERAS_BACKEND``, else keras.json's, else TensorFlow."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    for folder in (home, os.path.join("/tmp", ".keras")):  # Keras falls back to /tmp when home is not writable
        try:
            with open(os.path.join(folder, "keras.json")) as fh:
                return str(json.load(fh).get("backend") or "tensorflow")
        except (OSError, ValueError, AttributeError):
            continue
    return "tensorflow"


def running() -> Optional[str]:
    """The backend of a Keras already imported in this process, else None."""
    keras = sys.modules.get("keras")
    try:
        return str(keras.config.backend()) if keras is not None else None
    except AttributeError:  # Keras still being imported
        return None


def wanted(requested: Optional[str] = None) -> str:
    """The backend a sweep asking for ``requested`` (None: none in particular) would run on here."""
    return requested or running() or keras_default()


def choose(requested: Optional[str] = None) -> str:
    """The sweep's backend, put in ``KERAS_BACKEND`` for this process and the workers it starts.

    One line when it cannot be had: an unknown backend, one not installed, or a Keras that this
    process already imported on another backend (a notebook's kernel)."""
    current, name = running(), wanted(requested)
    if name not in BACKENDS:
        raise UsageError(
            f"Keras backend {name!r} cannot run a sweep; set backend= (or KERAS_BACKEND) to one of {', '.join(BACKENDS)}"
        )
    if current is not None and current != name:
        raise UsageError(
            f"Keras is already running on {current} in this process and cannot switch to {name}; "
            f"set KERAS_BACKEND={name} before Keras is imported (restart the notebook's kernel), or drop backend={name}"
        )
    if current is None and util.find_spec(name) is None:
        raise UsageError(f"backend={name} needs {name} installed; pip install \"{EXTRAS[name]}\"")
    os.environ[ENV] = name
    return name


def version(backend: str) -> str:
    """The installed version of a backend's library, without importing it."""
    for dist in DISTRIBUTIONS[backend]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"
