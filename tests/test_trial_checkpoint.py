"""A trial's checkpoint holds what resuming needs: weights, the optimizer's state, the best epoch, the curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


def compiled_model() -> Any:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.01, decay_steps=10, decay_rate=1.0)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    return model


@pytest.mark.backend
def test_checkpoint_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras
    from ray import tune

    from ktsweep.execution.trainable import TrialSettings, _epoch_reporter
    from ktsweep.execution.trial_checkpoint import STATE, TrialCheckpoint
    from ktsweep.execution.trial_result import unpack

    keras.utils.set_random_seed(0)  # the same curves, hence the same best epoch, every run
    reported: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics, **_: reported.append(unpack(metrics)))  # no Ray session here
    settings = TrialSettings(objective="val_loss", direction="min", epochs=5, batch_size=32, cpus_per_trial=1,
                             trials_root=str(tmp_path), trial_checkpoint_every=2)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)), rng.random((64, 1))
    at_epoch_3: dict[str, Any] = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 3:
                at_epoch_3.update(weights=self.model.get_weights(), step=int(self.model.optimizer.iterations),
                                  moments=[v.numpy() for v in self.model.optimizer.variables],
                                  best_epoch=reporter.best_epoch, best_weights=reporter.best_weights)

    first, reporter = compiled_model(), _epoch_reporter(settings)
    checkpoint = TrialCheckpoint.for_trial(settings, "07", reporter)
    first.fit(x, y, validation_data=(x, y), epochs=5, batch_size=32, verbose=0,
              callbacks=[reporter, checkpoint, Snapshot()])
    folder = tmp_path / "trial_07"
    # Checkpoints after epochs 1 and 3 (not after the last): only the newest is kept, and the best
    # epoch's weights (epoch 1's file when it is the best, else a best_ file, none when it is epoch 3).
    best = at_epoch_3["best_epoch"]
    best_file = {1: {"epoch_0001.npz"}, 3: set()}.get(best, {f"best_{best:04d}.npz"})
    assert {p.name for p in folder.iterdir() if p.name.startswith(("epoch_", "best_"))} == {"epoch_0003.npz", *best_file}
    assert (folder / STATE).exists()

    second, resumed = compiled_model(), _epoch_reporter(settings)
    restored = TrialCheckpoint.for_trial(settings, "07", resumed)
    assert restored.restore(second, initial_epoch=0) == 4  # continue with the fifth epoch
    for saved, loaded in zip(at_epoch_3["weights"], second.get_weights()):
        np.testing.assert_array_equal(saved, loaded)
    assert int(second.optimizer.iterations) == at_epoch_3["step"] == 8  # the learning-rate schedule goes on
    for saved, loaded in zip(at_epoch_3["moments"], second.optimizer.variables):
        np.testing.assert_array_equal(saved, loaded.numpy())
    assert resumed.best_epoch == at_epoch_3["best_epoch"]  # the best-epoch bookkeeping survives
    for saved, loaded in zip(at_epoch_3["best_weights"], resumed.best_weights):
        np.testing.assert_array_equal(saved, loaded)
    history = reported[-1]
    assert history["kind"] == "history" and [epoch for epoch, _ in history["history"]] == [0, 1, 2, 3]
    assert history["history"][2][1]["val_loss"] == pytest.approx(reporter_logs(reported, 2)["val_loss"])

    restored.clear()
    assert not folder.exists()


def reporter_logs(reported: list[dict], epoch: int) -> dict:
    return next(r["metrics"] for r in reported if r.get("kind") == "epoch" and r["epoch"] == epoch)


@pytest.mark.backend
def test_stateful_callbacks_go_on_counting_after_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial cut after epoch 3 and resumed stops where the uncut trial stops: EarlyStopping's
    patience, ReduceLROnPlateau's plateau and ModelCheckpoint's best are not reset by the resume."""
    import keras
    from ray import tune

    from ktsweep.execution.trainable import TrialSettings, _epoch_reporter
    from ktsweep.execution.trial_checkpoint import TrialCheckpoint

    monkeypatch.setattr(tune, "report", lambda metrics, **_: None)
    settings = TrialSettings(objective="val_loss", direction="min", epochs=12, batch_size=32, cpus_per_trial=1,
                             trials_root=str(tmp_path), trial_checkpoint_every=2)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)), rng.random((64, 1))

    def stateful() -> list[Any]:  # no epoch counts as better than the first: each one adds to the wait
        return [keras.callbacks.EarlyStopping(monitor="loss", patience=5, min_delta=10.0),
                keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=100, min_delta=10.0),
                keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", mode="max",
                                                save_best_only=True)]  # the highest loss: epoch 0's

    def fit(trial_id: str, cut_after: Any = None, resume: bool = False) -> tuple[list[Any], int]:
        keras.utils.set_random_seed(0)  # the same first epochs, cut or not
        model, reporter = compiled_model(), _epoch_reporter(settings)
        checkpoint = TrialCheckpoint.for_trial(settings, trial_id, reporter)
        initial_epoch = checkpoint.restore(model, initial_epoch=0) if resume else 0
        callbacks = [reporter, *stateful(), checkpoint]  # as the trainable orders them
        if cut_after is not None:  # the worker dies after this epoch, once its checkpoint is written
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == cut_after)))
        checkpoint.follow(callbacks)
        history = model.fit(x, y, validation_data=(x, y), epochs=12, batch_size=32, verbose=0,
                            initial_epoch=initial_epoch, callbacks=callbacks)
        return callbacks[1:4], len(history.epoch)

    (early, plateau, best), trained = fit("uncut")
    assert early.stopped_epoch == 5 and trained == 6  # patience 5, counted from epoch 0
    fit("cut", cut_after=3)
    (early_again, plateau_again, best_again), trained_again = fit("cut", resume=True)
    assert trained_again == 2  # epochs 4 and 5, then patience ran out, as uncut
    assert early_again.stopped_epoch == early.stopped_epoch and early_again.wait == early.wait == 5
    assert early_again.best == pytest.approx(early.best, rel=1e-2)  # epoch 0's loss, from before the cut
    assert plateau_again.wait == plateau.wait == 5
    assert best_again.best == pytest.approx(best.best, rel=1e-2)
