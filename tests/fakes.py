"""HyperModels that misbehave on purpose (imported by the Ray workers through PYTHONPATH)."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from ktsweep.hypermodels import MLPClassifier


class BuildReturnsNothing(MLPClassifier):
    def build(self, hp: kt.HyperParameters) -> Any:
        self.declare(hp)
        return None


class RaisesWithSGD(MLPClassifier):
    """A bug that bites only some hyperparameters: the SGD branch raises."""

    def build(self, hp: kt.HyperParameters) -> Any:
        if self.declare(hp)["optimizer"] == "sgd":
            raise ValueError(f"cannot handle sgd at learning rate {hp.get('learning_rate'):.3g}")
        return super().build(hp)


class DivergesWithSGD(MLPClassifier):
    """SGD with an infinite learning rate: the loss becomes NaN in the first epoch.

    (A merely huge rate, 1e12, can leave the loss finite: saturated softmax outputs are
    clipped, so the cross-entropy stays near -log(1e-7) and the test would be flaky.)"""

    def build(self, hp: kt.HyperParameters) -> Any:
        model = super().build(hp)
        if hp.get("optimizer") == "sgd":
            model.optimizer.learning_rate.assign(float("inf"))
        return model


DIES_ONCE_MARKER = "/tmp/ktsweep-test-dies-once"


def in_ray_worker() -> bool:
    """True in a Ray worker process; the driver also builds once, to learn the search space."""
    import ray

    return ray._private.worker.global_worker.mode == ray._private.worker.WORKER_MODE


class WorkerDiesOnce(MLPClassifier):
    """The first trial to build kills its own worker process (as the OOM killer would)."""

    def build(self, hp: kt.HyperParameters) -> Any:
        import os
        import signal

        if not in_ray_worker():
            return super().build(hp)
        try:
            os.close(os.open(DIES_ONCE_MARKER, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().build(hp)
        os.kill(os.getpid(), signal.SIGKILL)


EPOCH_LOG = "/tmp/ktsweep-test-epochs-trained"
STOPPING_LOG = "/tmp/ktsweep-test-early-stopping-state"
PAUSED_ONCE_MARKER = "/tmp/ktsweep-test-paused-once"
PAUSE_AFTER_EPOCH = 5


class PausesOnce(MLPClassifier):
    """Logs each epoch it trains as "pid epoch"; the first trial to finish epoch 5 (0-based) then
    waits there (after ktsweep's own callbacks have run), so that a test can kill it. With an
    EarlyStopping among ktsweep's callbacks, logs its state as each epoch begins and ends
    ("pid begin|end epoch wait best")."""

    def fit(self, hp: kt.HyperParameters, model: Any, *args: Any, **kwargs: Any) -> Any:
        import keras

        given = kwargs.get("callbacks", [])
        stopping = next((c for c in given if isinstance(c, keras.callbacks.EarlyStopping)), None)

        class EpochLog(keras.callbacks.Callback):
            def log_stopping(self, when: str, epoch: int) -> None:
                import os

                if stopping is not None:
                    with open(STOPPING_LOG, "a") as fh:
                        fh.write(f"{os.getpid()} {when} {epoch} {stopping.wait} {stopping.best}\n")

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.log_stopping("begin", epoch)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                import os
                import time

                self.log_stopping("end", epoch)
                with open(EPOCH_LOG, "a") as fh:
                    fh.write(f"{os.getpid()} {epoch}\n")
                if epoch != PAUSE_AFTER_EPOCH:
                    return
                try:
                    os.close(os.open(PAUSED_ONCE_MARKER, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return
                with open(EPOCH_LOG, "a") as fh:
                    fh.write(f"{os.getpid()} paused\n")
                time.sleep(120)  # the test kills this process long before; if not, it must not go on training
                os._exit(1)

        kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochLog()]
        return model.fit(*args, **kwargs)
