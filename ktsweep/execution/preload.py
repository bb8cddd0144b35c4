"""Imported by every worker a local Ray of ktsweep's own starts, before work arrives (Ray's
``preload_python_modules`` names this module): Keras on the worker's ``KERAS_BACKEND``, Keras Tuner
and the trainable, so that a trial actor starts warm.

A worker started for a data task (``KTSWEEP_DATA_TASKS``: the probe, the final model) imports what its
task needs instead. An image folder's probe needs no framework at all, and on two cores its worker's
TensorFlow import, beside the trial workers' own, held the first trials back by about 6 s
(``bench/RESULTS.md``, section 10).
"""

from __future__ import annotations

import importlib
import os

from ktsweep.execution.warm_workers import DATA_TASKS, worker_preload

if os.environ.get(DATA_TASKS) != "1":
    for _name in worker_preload(os.environ.get("KERAS_BACKEND", "tensorflow")):
        importlib.import_module(_name)
