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
- ``stop``: written by the driver when the scheduler stops the trial (``request_stop``);
- ``exploit``: written by the driver when Population Based Training tells the trial to continue
  from a stronger trial's state (``request_exploit``, ``execution/pbt.py``). Under PBT the
  checkpoints of the last two perturbation epochs are kept (pinned) for other trials to copy;
  they and ``state.json`` also hold the trial's current hyperparameters, which its exploits change.

Older checkpoint files are removed as newer ones are written, and the folder is removed
when the trial ends: a finished trial keeps only its Ray checkpoint (Hyperband hand-off, pull).
Works on any storage pyarrow opens (a local path, ``s3://``, ``gs://``).
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any, Optional

import keras
import numpy as np

STATE = "state.json"
STOP = "stop"
EXPLOIT = "exploit"
PINS_KEPT = 2  # a donor's pin is read by trials a little behind it; older ones go
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


def request_exploit(trials_root: str, kt_trial_id: str, request: dict[str, Any]) -> None:
    """Driver side: ask a running trial to continue from another trial's pinned state after this epoch."""
    trial_folder(trials_root, kt_trial_id).write(EXPLOIT, json.dumps(request).encode(), atomic=True)


def pin_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.npz"


def read_pin(trials_root: str, kt_trial_id: str, epoch: int, *, wait_s: float = 10.0) -> Optional[dict[str, Any]]:
    """A trial's pinned state at ``epoch`` (``hp``, ``model``, ``optimizer``), or None if it is gone.

    The donor writes it right after its report returns, and the scheduler may have named it a moment
    before: a missing file is waited for (``wait_s``), a donor that moved on or finished is not."""
    folder = trial_folder(trials_root, kt_trial_id)
    deadline = time.time() + wait_s
    while not folder.exists(pin_name(epoch)):
        raw = folder.read(STATE)
        moved_on = raw is not None and json.loads(raw)["epoch"] > epoch
        if moved_on or time.time() > deadline:
            return None
        time.sleep(0.05)
    data = folder.read(pin_name(epoch))
    if data is None:
        return None
    hp = _unpack(data, "hp")
    return {"hp": json.loads(str(hp[0])) if hp else None, "model": _unpack(data, "model"),
            "optimizer": _unpack(data, "optimizer")}


def load_state(model: Any, weights: list[np.ndarray], optimizer_values: list[np.ndarray], *,
               keep_learning_rate: bool = False) -> bool:
    """Put saved weights and optimizer variables into ``model``; return whether the optimizer's were loaded.

    ``keep_learning_rate``: the model's own learning rate stays (an exploit perturbs it: the donor's
    would overwrite it). An optimizer of another kind or shape (a perturbed optimizer choice) starts
    afresh, the weights still load."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    model.set_weights(weights)
    variables = list(optimizer.variables) if optimizer is not None else []
    if len(variables) != len(optimizer_values) or any(
        tuple(v.shape) != tuple(np.shape(value)) for v, value in zip(variables, optimizer_values)
    ):
        return False
    for variable, value in zip(variables, optimizer_values):
        if keep_learning_rate and variable.name == "learning_rate":
            continue
        variable.assign(value)
    return True


class TrialCheckpoint(keras.callbacks.Callback):
    """Runs after every other callback of ``fit()`` (so a checkpoint holds what they did at the
    epoch's end, a learning rate cut included): saves a checkpoint every ``every`` epochs, and stops
    training when the scheduler asked for it. Inert when both are off."""

    def __init__(
        self, folder: Optional[TrialFolder], *, every: int, stoppable: bool, reporter: Any, objective: str,
        pin_every: int = 0,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.objective = objective
        self.every = every
        self.pin_every = pin_every  # PBT's perturbation interval: these checkpoints are kept for donors
        self.stoppable = stoppable
        self.hp: Any = None  # under PBT, the trial's keras_tuner.HyperParameters (its exploits change them)
        self.lineage: list[dict[str, Any]] = []  # the trial's exploits, oldest first
        self.exploit: Optional[dict[str, Any]] = None  # the request that ended the last fit()
        self._pins: list[str] = []
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
        pin_every = settings.pbt_interval if settings.trials_root else 0
        stoppable = bool(settings.trials_root and settings.scheduler)
        folder = trial_folder(settings.trials_root, kt_trial_id) if every or stoppable or pin_every else None
        return cls(folder, every=every, stoppable=stoppable, reporter=reporter, objective=settings.objective,
                   pin_every=pin_every)

    # -- resume ----------------------------------------------------------

    def _state(self) -> Optional[dict[str, Any]]:
        raw = self.folder.read(STATE) if self.folder and (self.every or self.pin_every) else None
        return json.loads(raw) if raw is not None else None

    def saved_hp(self) -> Optional[dict[str, Any]]:
        """The hyperparameters the last checkpoint was trained with, when exploits changed them (PBT):
        a resumed trial is rebuilt with these, not with the values it started from."""
        state = self._state()
        return json.loads(state["hp"]) if state and state.get("hp") else None

    def forget_best(self) -> None:
        self._best_file = None

    def restore(self, model: Any, initial_epoch: int) -> int:
        """Load the last checkpoint into ``model`` and the reporter; return the epoch to start from.

        Re-sends the checkpoint's per-epoch metrics (``kind: history``): the driver that
        recorded them may have died before writing them to MLflow.
        """
        state = self._state()
        if self.folder is not None and self.pin_every:  # a request from a driver that died before the trial read it
            self.folder.remove(EXPLOIT)  # (this driver's scheduler decides anew)
        if state is None:
            return initial_epoch
        saved = self.folder.read(state["weights"]) or b""
        values = _unpack(saved, "optimizer")
        if not load_state(model, _unpack(saved, "model"), values):
            raise ValueError(f"the trial's checkpoint holds {len(values)} optimizer variables that do not fit its "
                             "optimizer: the model is not built the same way it was")
        self.lineage = state.get("lineage", [])
        self._pins = state.get("pins", [])
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
        copied = [int(e["epoch"]) for e in self.lineage if "skipped" not in e]  # PBT: epochs whose pin is a copy
        tune.report({"kind": "history", "objective": objective, "history": sorted(self.history.items()),
                     **({"copied_at": copied[-1]} if copied else {})})
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
        elif self.pin_every and not last and (epoch + 1) % self.pin_every == 0:
            self.exploit = self._exploit_request(epoch)
            if self.exploit is not None:
                self.model.stop_training = True  # the trial continues from the donor's state (trainable.py)
            else:
                self.save(epoch, pin=True)
        elif self.every and not last and (epoch + 1) % self.every == 0:
            self.save(epoch)

    def _exploit_request(self, epoch: int) -> Optional[dict[str, Any]]:
        raw = self.folder.read(EXPLOIT)
        if raw is None:
            return None
        self.folder.remove(EXPLOIT)
        request = json.loads(raw)
        return request if request["epoch"] == epoch else None  # a request for another epoch is stale

    def save(self, epoch: int, *, pin: bool = False) -> None:
        """Write this epoch's checkpoint, then point ``state.json`` at it, then drop the older files
        (``pin``: PBT's perturbation epochs are kept, the last two, for other trials to copy)."""
        reporter, weights = self.reporter, pin_name(epoch)
        optimizer = getattr(self.model, "optimizer", None)
        self.folder.write(weights, _pack(model=self.model.get_weights(),
                                         optimizer=[v.numpy() for v in optimizer.variables] if optimizer else [],
                                         hp=[np.array(self._hp_json())] if self.hp is not None else []),
                          atomic=pin)
        if pin:
            self._pins = [name for name in self._pins if name != weights][-(PINS_KEPT - 1):] + [weights]
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
            "hp": self._hp_json() if self.hp is not None else None,
            "lineage": self.lineage,
            "pins": self._pins,
        }
        self.folder.write(STATE, json.dumps(state).encode(), atomic=True)
        keep = {STATE, STOP, EXPLOIT, weights, self._best_file, *self._pins}
        for name in self.folder.names():
            if name not in keep:
                self.folder.remove(name)

    def _hp_json(self) -> str:
        return json.dumps(self.hp.get_config())  # read at each save: fit() may declare more

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
