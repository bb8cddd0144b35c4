"""A trial's own folder in the executor's storage: checkpoints to resume inside a trial, and the
scheduler's request to stop it early.

``STORAGE/trials/trial_<id>/`` is keyed by the oracle trial id, not by the Ray trial or
experiment, so a trial retried after its worker died (Ray's ``max_failures``) and a trial
retried by ``ktsweep resume`` after the driver died both find it:

- ``epoch_NNNN.npz``: the model's weights and the optimizer's variables (its step count and
  moments) after epoch NNNN, as arrays. The model itself is rebuilt from the trial's
  hyperparameters, so only its state is saved: Keras' ``save_weights`` took 13 to 60 ms per
  epoch here, these arrays a few ms (bench/RESULTS.md);
- ``best_NNNN.npz``: the best epoch's weights (the model the trial will report), when that
  epoch's own checkpoint is not kept;
- ``state.json``: the last checkpoint's epoch, its files, the epoch reporter's best-epoch
  bookkeeping, every epoch's metrics (re-sent on resume, so MLflow's curves stay whole) and
  the training state of Keras' stateful callbacks (``CALLBACK_STATE``: an EarlyStopping's
  patience goes on counting, a ``save_best_only`` ModelCheckpoint keeps its best). It is
  written last and atomically: it names only files already complete;
- ``stop``: written by the driver when the scheduler stops the trial (``request_stop``).

Older checkpoint files are removed as newer ones are written, and the folder is removed
when the trial ends: a finished trial keeps only its Ray checkpoint (Hyperband hand-off, pull).
Works on any storage pyarrow opens (a local path, ``s3://``, ``gs://``).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Optional

import keras
import numpy as np

STATE = "state.json"
STOP = "stop"
TRIALS_FOLDER = "trials"

# What Keras' stateful callbacks learn while training, which ``fit()`` resets in ``on_train_begin``
# (their settings, and what they derive from them, such as a negated ``min_delta``, are not state).
# Subclasses count. An EarlyStopping's ``best_weights`` are not kept: the trial reports its own
# best epoch's weights whatever the callbacks do.
CALLBACK_STATE: tuple[tuple[type, tuple[str, ...]], ...] = (
    (keras.callbacks.EarlyStopping, ("wait", "stopped_epoch", "best", "best_epoch")),
    (keras.callbacks.ReduceLROnPlateau, ("wait", "cooldown_counter", "best")),
    (keras.callbacks.ModelCheckpoint, ("best",)),
)


class TrialFolder:
    """One trial's folder, on local disk or remote storage (through pyarrow's filesystems)."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs

        self.uri = uri
        self.fs, self.path = pyarrow.fs.FileSystem.from_uri(uri)

    def write(self, name: str, data: bytes, *, atomic: bool = False) -> None:
        """Write a file; ``atomic``: readers see the old or the new content, never a part."""
        self.fs.create_dir(self.path, recursive=True)
        target = f"{self.path}/{name}"
        staged = f"{target}.tmp" if atomic else target
        with self.fs.open_output_stream(staged) as out:
            out.write(data)
        if atomic:
            self.fs.move(staged, target)

    def read(self, name: str) -> Optional[bytes]:
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(f"{self.path}/{name}") as source:
            return source.read()

    def exists(self, name: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(f"{self.path}/{name}").type != pyarrow.fs.FileType.NotFound

    def names(self) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.path, allow_not_found=True)
        return [info.base_name for info in self.fs.get_file_info(selector)]

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.delete_file(f"{self.path}/{name}")

    def clear(self) -> None:
        import pyarrow.fs

        if self.fs.get_file_info(self.path).type != pyarrow.fs.FileType.NotFound:
            self.fs.delete_dir(self.path)


def trial_folder(trials_root: str, kt_trial_id: str) -> TrialFolder:
    return TrialFolder(f"{trials_root.rstrip('/')}/trial_{kt_trial_id}")


def request_stop(trials_root: str, kt_trial_id: str, epoch: int) -> None:
    """Driver side: ask a running trial to finish after this epoch (it still reports its best model)."""
    trial_folder(trials_root, kt_trial_id).write(STOP, str(epoch).encode())


class TrialCheckpoint(keras.callbacks.Callback):
    """Runs after every other callback of ``fit()`` (so a checkpoint holds what they did at the
    epoch's end, a learning rate cut included): saves a checkpoint every ``every`` epochs, and stops
    training when the scheduler asked for it. Inert when both are off."""

    def __init__(
        self, folder: Optional[TrialFolder], *, every: int, stoppable: bool, reporter: Any, objective: str
    ) -> None:
        super().__init__()
        self.folder = folder
        self.objective = objective
        self.every = every
        self.stoppable = stoppable
        self.reporter = reporter
        self.history: dict[int, dict[str, float]] = {}  # epoch -> its metrics, re-sent on resume
        self.stopped_at: Optional[int] = None  # the epoch after which the scheduler stopped the trial
        self._best_file: Optional[str] = None
        self._callbacks: list[Any] = []  # fit()'s callback list, whose stateful members are checkpointed
        self._saved_callbacks: Optional[list] = None  # restored, applied once fit() has reset them

    def follow(self, callbacks: list[Any]) -> None:
        """Checkpoint the state of the stateful callbacks in ``callbacks`` (the list ``fit()`` is given;
        kept by reference, so callbacks a HyperModel's ``fit()`` appends to it count too)."""
        self._callbacks = callbacks

    @classmethod
    def for_trial(cls, settings: Any, kt_trial_id: str, reporter: Any) -> "TrialCheckpoint":
        every = settings.trial_checkpoint_every if settings.trials_root else 0
        stoppable = bool(settings.trials_root and settings.scheduler)
        folder = trial_folder(settings.trials_root, kt_trial_id) if every or stoppable else None
        return cls(folder, every=every, stoppable=stoppable, reporter=reporter, objective=settings.objective)

    # -- resume ----------------------------------------------------------

    def restore(self, model: Any, initial_epoch: int) -> int:
        """Load the last checkpoint into ``model`` and the reporter; return the epoch to start from.

        Re-sends the checkpoint's per-epoch metrics (``kind: history``): the driver that
        recorded them may have died before writing them to MLflow.
        """
        raw = self.folder.read(STATE) if self.folder and self.every else None
        if raw is None:
            return initial_epoch
        state = json.loads(raw)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        saved = self.folder.read(state["weights"]) or b""
        model.set_weights(_unpack(saved, "model"))
        variables, values = list(optimizer.variables) if optimizer is not None else [], _unpack(saved, "optimizer")
        if len(variables) != len(values):
            raise ValueError(f"the trial's checkpoint holds {len(values)} optimizer variables, its optimizer has "
                             f"{len(variables)}: the model is not built the same way it was")
        for variable, value in zip(variables, values):
            variable.assign(value)
        reporter, best = self.reporter, state["best"]
        reporter.best_score, reporter.best_epoch, reporter.best_logs = best["score"], best["epoch"], best["logs"]
        if best["weights"]:
            reporter.best_weights = _unpack(self.folder.read(best["weights"]) or b"", "model")
            self._best_file = best["weights"]
        reporter.diverged = tuple(state["diverged"]) if state["diverged"] else None
        self.history = {int(epoch): logs for epoch, logs in state["history"]}
        self._saved_callbacks = state.get("callbacks")
        from ray import tune

        objective = best["logs"].get(self.objective, math.nan)
        tune.report({"kind": "history", "objective": objective, "history": sorted(self.history.items())})
        return int(state["epoch"]) + 1

    # -- during fit ------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        """On the first epoch after a resume: every callback's ``on_train_begin`` has run (and reset
        it), so the saved state goes back now, matched by position and class."""
        saved, self._saved_callbacks = self._saved_callbacks, None
        for callback, entry in zip(self._callbacks, saved or []):
            if entry is not None and type(callback).__name__ == entry[0]:
                for name, value in entry[1].items():
                    setattr(callback, name, value)

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if self.folder is None:
            return
        self.history[epoch] = {key: float(value) for key, value in (logs or {}).items() if np.isscalar(value)}
        last = epoch >= self.params.get("epochs", 0) - 1
        if self.stoppable and not last and self.folder.exists(STOP):
            self.model.stop_training = True
            self.stopped_at = epoch
        elif self.every and not last and (epoch + 1) % self.every == 0:
            self.save(epoch)

    def save(self, epoch: int) -> None:
        """Write this epoch's checkpoint, then point ``state.json`` at it, then drop the older files."""
        reporter, weights = self.reporter, f"epoch_{epoch:04d}.npz"
        optimizer = getattr(self.model, "optimizer", None)
        self.folder.write(weights, _pack(model=self.model.get_weights(),
                                         optimizer=[v.numpy() for v in optimizer.variables] if optimizer else []))
        best = reporter.best_epoch
        if best == epoch:
            self._best_file = weights  # this epoch is the best so far: its weights are in this file
        elif reporter.best_weights is not None and self._best_file not in (f"epoch_{best:04d}.npz", f"best_{best:04d}.npz"):
            self._best_file = f"best_{best:04d}.npz"  # the best epoch was not a checkpointed one
            self.folder.write(self._best_file, _pack(model=reporter.best_weights))
        state = {
            "epoch": epoch,
            "weights": weights,
            "best": {"score": reporter.best_score, "epoch": reporter.best_epoch, "logs": reporter.best_logs,
                     "weights": self._best_file},
            "diverged": list(reporter.diverged) if reporter.diverged else None,
            "history": sorted(self.history.items()),
            "callbacks": [_callback_state(callback) for callback in self._callbacks],
        }
        self.folder.write(STATE, json.dumps(state).encode(), atomic=True)
        keep = {STATE, STOP, weights, self._best_file}
        for name in self.folder.names():
            if name not in keep:
                self.folder.remove(name)

    def clear(self) -> None:
        """The trial is over (reported, or failed): its checkpoints are no longer needed."""
        if self.folder is not None:
            self.folder.clear()


def _callback_state(callback: Any) -> Optional[list]:
    """``[class name, {attribute: value}]`` for a stateful Keras callback, else None."""
    for kind, names in CALLBACK_STATE:
        if isinstance(callback, kind):
            return [type(callback).__name__, {name: _plain(getattr(callback, name, None)) for name in names}]
    return None


def _plain(value: Any) -> Any:
    """A number JSON can hold (Keras keeps ``best`` as a NumPy or backend scalar)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return float(np.asarray(value))


def _pack(**groups: list[np.ndarray]) -> bytes:
    """Arrays in one .npz, named ``<group>_<index>``."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"{group}_{i}": array for group, arrays in groups.items() for i, array in enumerate(arrays)})
    return buffer.getvalue()


def _unpack(data: bytes, group: str) -> list[np.ndarray]:
    with np.load(io.BytesIO(data)) as arrays:
        count = sum(name.startswith(f"{group}_") for name in arrays.files)
        return [arrays[f"{group}_{i}"] for i in range(count)]
