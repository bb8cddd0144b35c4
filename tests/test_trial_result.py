"""What Ray Tune keeps of each trial's reports in the driver for the whole sweep (``execution/trial_result.py``)."""

from __future__ import annotations

import json
import math

import numpy as np
from ray.tune.experiment import Trial

from ktsweep.execution.trial_result import (
    BEST_EPOCH_KEY,
    DETAILS_KEY,
    HP_KEY,
    STATUS_KEY,
    STOPPED_EARLY_KEY,
    pack,
    unpack,
)

EPOCH = {"kind": "epoch", "epoch": 3, "objective": 0.91,
         "metrics": {"loss": 0.3, "accuracy": 0.9, "val_loss": 0.35, "val_accuracy": 0.91}}
FINAL = {"kind": "final", STATUS_KEY: "ok", "objective": 0.91, BEST_EPOCH_KEY: np.int64(3), "epochs_run": 4,
         HP_KEY: json.dumps({"values": {"units": 32}}), STOPPED_EARLY_KEY: None, "trial_seconds": 2.5,
         "worker": {"pid": 123, "node_id": "abc", "threads": 1, "rss_mb": 812.4, "peak_rss_mb": 900.0},
         "phases": {"build": 0.1, "fit": 2.0, "save": 0.2},
         **{f"best/{key}": np.float32(value) for key, value in EPOCH["metrics"].items()}}


def test_round_trip_gives_the_trainables_report_back() -> None:
    for report in (EPOCH, FINAL):
        packed = pack(report)
        assert json.loads(json.dumps(packed))  # plain JSON-able values only (NumPy scalars converted)
        back = unpack(packed)
        assert back.keys() == report.keys()
        for key, value in report.items():
            assert back[key] == value or (isinstance(value, float) and math.isnan(value) and math.isnan(back[key]))
    assert unpack(EPOCH) is EPOCH  # a result never packed (an older worker, a test's fake) reads as it is


def test_tune_tracks_only_the_numbers_it_judges() -> None:
    """Tune keeps running statistics of every number of every result, per trial, for the whole sweep:
    about 100 KB per trial with everything in the open, measured at 1,000 trials (RESULTS section 8)."""
    packed, plain = Trial("ktsweep_probe", stub=True), Trial("ktsweep_probe", stub=True)
    for index, report in enumerate([EPOCH, EPOCH, FINAL], start=1):
        plain.update_last_result({**report, "training_iteration": index})
        packed.update_last_result({**pack(report), "training_iteration": index})
    tracked = set(packed.run_metadata.metric_analysis)
    assert {"objective", "epoch"} <= tracked
    assert not any(key.startswith(("metrics", "worker", "phases", "best/")) for key in tracked)
    assert len(tracked) <= 3 and len(plain.run_metadata.metric_analysis) >= 20
    assert len(packed.get_json_state()[1]) < len(plain.get_json_state()[1]) / 4  # what the controller keeps per trial
    assert unpack(packed.last_result)["worker"]["rss_mb"] == 812.4


def test_trial_name_creators_are_stored_by_reference() -> None:
    """Tune writes each trial's name creators into its JSON state (kept per trial, written at every
    experiment save): a lambda is pickled whole (~1.3 KB each), a module function by its name."""
    from ktsweep.search.experiment import trial_dirname, trial_name

    trial = Trial("ktsweep_probe", stub=True, config={"kt_trial_id": "0007"},
                  trial_name_creator=trial_name, trial_dirname_creator=trial_dirname)
    state = json.loads(trial.get_json_state()[0])
    assert str(trial) == "trial_0007"
    assert all(len(json.dumps(state[key])) < 300 for key in ("trial_name_creator", "trial_dirname_creator"))  # a lambda: ~1,100


def test_hyperparameters_travel_back_only_when_the_trial_declared_new_ones() -> None:
    """Tune keeps each trial's final result for the whole sweep: the space (~1 KB) is sent back only
    when build() or fit() added to it, which is when Keras Tuner's end_trial needs it."""
    import keras_tuner as kt

    from ktsweep.execution.trainable import _declared_hp

    hp = kt.HyperParameters()
    hp.Int("units", 8, 64, step=8)
    given = hp.get_config()
    assert _declared_hp(kt.HyperParameters.from_config(given), given) is None
    hp.Boolean("normalize")  # declared by fit(), as in tests/user_project
    sent = json.loads(_declared_hp(hp, given))
    assert [entry["config"]["name"] for entry in sent["space"]] == ["units", "normalize"]


def test_a_finished_trial_keeps_only_what_tune_reads_again() -> None:
    """The driver holds every finished trial to the sweep's end (RESULTS section 8: +9% over 1,000
    trials before, +4% after). ``SlimFinishedTrials`` runs after the searcher and ktsweep's readers."""
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    from ktsweep.search.tune_callbacks import slim_finished

    trial = Trial("ktsweep_probe", stub=True, config={"kt_trial_id": "0007"})
    trial.run_metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig())
    for index, report in enumerate([EPOCH, EPOCH, FINAL], start=1):
        result = {**pack(report), "training_iteration": index, "done": index == 3, "config": trial.config}
        trial.update_last_result(result)
    trial.run_metadata.checkpoint_manager.register_checkpoint(_TrainingResult(Checkpoint("/ckpt/0007"), dict(result)))
    before = trial.get_json_state()
    slim_finished(trial)
    after = trial.get_json_state()

    assert trial.last_result["objective"] == 0.91 and trial.last_result["done"] is True
    assert trial.last_result["training_iteration"] == 3 and "kind" not in trial.last_result
    assert DETAILS_KEY not in trial.last_result and "config" not in trial.last_result
    kept = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    assert kept.checkpoint.path == "/ckpt/0007" and DETAILS_KEY not in kept.metrics and "kind" not in kept.metrics
    assert set(trial.run_metadata.metric_analysis) == set(trial.run_metadata.metric_n_steps) == {"objective"}
    assert trial.run_metadata.metric_analysis["objective"]["max"] == 0.91  # Tune's summary of the trial stays
    assert len(after[1]) < len(before[1]) / 2  # the cache was dropped and rebuilt from the slim state
    restored = Trial("ktsweep_probe", stub=True)  # what an experiment checkpoint holds still reads back
    restored.restore_run_metadata(after[1])
    assert json.loads(after[0])["config"] == {"kt_trial_id": "0007"} and restored.last_result["objective"] == 0.91
    trial.update_last_result({**pack(EPOCH), "training_iteration": 4})  # continued: its statistics still update
    assert trial.run_metadata.metric_analysis["objective"]["last-5-avg"] == 0.91
