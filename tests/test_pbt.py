"""Population Based Training over Keras Tuner spaces: explore, the scheduler's decisions, the exploit
inside the trial (checked from the weights), what MLflow, the report and the card show, and resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_schedulers import FakeController, FakeTrial

from ktsweep.tracking.records import (
    HP_METRIC,
    TAG_FINAL_HP,
    TAG_PBT_DONOR,
    TAG_PBT_EXPLOITS,
    TAG_PBT_LINEAGE,
    TAG_TRIAL,
    find_runs,
)


def _space() -> Any:
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Int("units", 8, 64, step=8, default=32)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log", default=1e-3)
    hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.2)
    hp.Choice("batch_size", [16, 32, 64, 128], default=32)
    hp.Boolean("normalize", default=False)
    hp.Fixed("seed", 7)
    return hp


def test_explore_perturbs_within_each_range_and_step() -> None:
    from ktsweep.execution.pbt import explore

    names = ["units", "learning_rate", "dropout", "batch_size", "normalize", "seed"]
    for seed in range(200):
        hp = _space()
        changes = explore(hp, names, random.Random(seed), resample_probability=0.0)
        values = hp.values
        assert values["units"] in range(8, 65, 8) and values["units"] in (24, 40)  # 32 x 0.8 or x 1.2, on the step
        assert values["learning_rate"] == pytest.approx(1e-3 * 0.8) or values["learning_rate"] == pytest.approx(1.2e-3)
        assert round(values["dropout"], 6) in (0.2, 0.3)  # 0.16 -> 0.2, 0.24 -> 0.2 on the 0.1 step; or clipped
        assert values["batch_size"] in (16, 64)  # a neighbour of 32
        assert values["normalize"] is False and values["seed"] == 7  # a Boolean only changes when resampled
        assert set(changes) <= set(names) and all(old != new for old, new in changes.values())
    hp = _space()
    hp.values["units"], hp.values["learning_rate"] = 64, 0.1
    for seed in range(50):  # at the top of the range: clipped, never out of it
        explore(hp, ["units", "learning_rate"], random.Random(seed), resample_probability=0.0)
        assert 8 <= hp.values["units"] <= 64 and 1e-4 <= hp.values["learning_rate"] <= 0.1
    resampled = set()
    for seed in range(100):  # always resample: Keras Tuner's prior (a Boolean may flip)
        hp = _space()
        explore(hp, ["normalize", "units"], random.Random(seed), resample_probability=1.0)
        resampled.add(hp.values["normalize"])
        assert hp.values["units"] in range(8, 65, 8)
    assert resampled == {True, False}


def test_which_hyperparameters_may_change() -> None:
    from ktsweep.core.errors import FatalError
    from ktsweep.execution.pbt import mutable_names

    values = {"units": 32, "learning_rate": 1e-3, "head_lr": 0.1, "batch_size": 32, "tuner/epochs": 4}
    # By default: not declared by build() (batch_size, fit()'s), plus the learning rates; never tuner/*.
    assert mutable_names(values, mutable=None, fixed=["units", "learning_rate", "head_lr"]) == [
        "learning_rate", "head_lr", "batch_size"]
    assert mutable_names(values, mutable=["units"], fixed=[]) == ["units"]
    with pytest.raises(FatalError, match=r"scheduler.mutable names lr_typo, which the search space does not declare"):
        mutable_names(values, mutable=["lr_typo"], fixed=[])
    # One a condition turned off in this trial is declared all the same: nothing to perturb in it, no error.
    assert mutable_names(values, mutable=["units", "dropout"], fixed=[], space=[*values, "dropout"]) == ["units"]


def _pbt(tmp_path: Path, **overrides: Any) -> Any:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.schedulers import make_scheduler

    args = ["scheduler=pbt", "sweep.epochs=6", "scheduler.perturbation_interval=2",
            *(f"scheduler.{key}={value}" for key, value in overrides.items())]
    conf = validate(compose(args)).scheduler
    return make_scheduler(conf, trials_root=str(tmp_path), objective="val_accuracy", mode="max",
                          fixed=["units"], seed=0)


def _exploit_file(tmp_path: Path, trial: str) -> Any:
    path = tmp_path / f"trial_{trial}" / "exploit"
    return json.loads(path.read_text()) if path.exists() else None


def test_the_scheduler_tells_the_bottom_quantile_to_copy_the_top(tmp_path: Path) -> None:
    from ray.tune.schedulers import TrialScheduler

    pbt = _pbt(tmp_path, quantile_fraction=0.25)
    trials = [FakeTrial(str(i)) for i in range(4)]
    controller = FakeController(trials)
    decisions = []
    for epoch in range(6):  # epochs 1 and 3 are judged (2 and 4 done); epoch 5 is the last: nothing to continue
        for i in (1, 2, 3, 0):  # trial 0, the worst, reports last: the others' scores are in when it is judged
            decisions.append(pbt.on_trial_result(controller, trials[i], {"kind": "epoch", "epoch": epoch,
                                                                         "objective": 0.2 * i}))
        if epoch == 1:
            request = _exploit_file(tmp_path, "0")
            assert request is not None and request["donor"] == "3" and request["donor_epoch"] == 1
            assert request["epoch"] == 1 and request["mutable"] is None and request["fixed"] == ["units"]
            assert request["score"] == 0.0 and request["donor_score"] == pytest.approx(0.6)
            assert all(_exploit_file(tmp_path, t) is None for t in "123")
            (tmp_path / "trial_0" / "exploit").unlink()  # the trial read it
    assert set(decisions) == {TrialScheduler.CONTINUE}  # never PAUSE (a function trial would start over), never STOP
    assert [(e["trial"], e["epoch"], e["donor_epoch"]) for e in pbt.exploits] == [("0", 1, 1), ("0", 3, 3)]
    # Trial 1 at epoch 1 was never lower: alone, then above trial 0's missing score, then above nobody.

    pbt.on_trial_complete(controller, trials[3], {"kind": "final"})
    assert "ray-3" not in pbt.scores  # a finished trial's state is gone: it is no donor


def test_a_trial_told_to_copy_at_this_epoch_is_no_donor_at_it(tmp_path: Path) -> None:
    """Asynchronous judging can rank a trial low when it reports and high when a later, weaker one
    does: its state at that epoch is then a copy in the making, so the later one copies the original."""
    later_donors = set()
    for seed in range(8):
        pbt = _pbt(tmp_path / str(seed), quantile_fraction=0.5)
        pbt.rng.seed(seed)
        trials = [FakeTrial(str(i)) for i in range(4)]
        controller = FakeController(trials)
        for i, score in ((2, 0.23), (3, 0.07), (0, 0.05), (1, 0.01)):
            pbt.on_trial_result(controller, trials[i], {"kind": "epoch", "epoch": 1, "objective": score})
        assert {e["trial"]: e["donor"] for e in pbt.exploits} == {"3": "2", "0": "2", "1": "2"}, seed
        # At the next judged epoch each trial holds its own state again: trial 3 may give it.
        pbt.exploits.clear()
        for i, score in ((2, 0.50), (3, 0.60), (0, 0.40), (1, 0.10)):
            pbt.on_trial_result(controller, trials[i], {"kind": "epoch", "epoch": 3, "objective": score})
        assert [e["trial"] for e in pbt.exploits] == ["0", "1"] and {e["donor"] for e in pbt.exploits} <= {"2", "3"}
        later_donors |= {e["donor"] for e in pbt.exploits}
    assert later_donors == {"2", "3"}  # trial 3, a copier at epoch 1, gives its own state at epoch 3

    # A copier goes on training past the judged epoch before a slower trial judges it: still no donor there.
    for seed in range(8):
        pbt = _pbt(tmp_path / f"slow{seed}", quantile_fraction=0.5)
        pbt.rng.seed(seed)
        trials = [FakeTrial(str(i)) for i in range(4)]
        controller = FakeController(trials)
        for i, score in ((2, 0.23), (3, 0.07), (0, 0.05)):
            pbt.on_trial_result(controller, trials[i], {"kind": "epoch", "epoch": 1, "objective": score})
        pbt.on_trial_result(controller, trials[3], {"kind": "epoch", "epoch": 2, "objective": 0.30})  # not judged
        pbt.exploits.clear()
        pbt.on_trial_result(controller, trials[1], {"kind": "epoch", "epoch": 1, "objective": 0.01})
        assert [e["donor"] for e in pbt.exploits] == ["2"], seed

    # A new driver learns from a resumed trial's history which pin is a copy.
    pbt = _pbt(tmp_path / "resumed", quantile_fraction=0.5)
    trials = [FakeTrial(str(i)) for i in range(4)]
    controller = FakeController(trials)
    for i, score, copied in ((2, 0.23, None), (3, 0.07, 1), (0, 0.05, 1)):
        history = {"kind": "history", "history": [[0, {"val_accuracy": 0.0}], [1, {"val_accuracy": score}]],
                   **({"copied_at": copied} if copied is not None else {})}
        pbt.on_trial_result(controller, trials[i], history)
    for seed in range(8):
        pbt.rng.seed(seed)
        pbt.exploits.clear()
        pbt.on_trial_result(controller, trials[1], {"kind": "epoch", "epoch": 1, "objective": 0.01})
        assert [e["donor"] for e in pbt.exploits] == ["2"], seed


def test_minimising_and_a_resumed_population(tmp_path: Path) -> None:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.schedulers import make_scheduler

    conf = validate(compose(["scheduler=pbt", "sweep.epochs=8", "scheduler.perturbation_interval=2",
                             "scheduler.burn_in=3", "scheduler.quantile_fraction=0.5"])).scheduler
    pbt = make_scheduler(conf, trials_root=str(tmp_path), objective="val_loss", mode="min", fixed=[], seed=1)
    trials = [FakeTrial(str(i)) for i in range(2)]
    controller = FakeController(trials)
    # A resumed trial re-sends its history: its score at its last judged epoch (burn-in 3: the first is epoch 3).
    history = [[e, {"val_loss": 1.0 - 0.1 * e}] for e in range(5)]
    pbt.on_trial_result(controller, trials[0], {"kind": "history", "history": history})
    assert pbt.scores["ray-0"][1] == 3 and pbt.scores["ray-0"][0] == pytest.approx(-0.7)
    pbt.on_trial_result(controller, trials[1], {"kind": "epoch", "epoch": 1, "objective": 5.0})
    assert "ray-1" not in pbt.scores  # before the burn-in
    pbt.on_trial_result(controller, trials[1], {"kind": "epoch", "epoch": 3, "objective": 0.1})  # lower loss: better
    pbt.on_trial_result(controller, trials[0], {"kind": "epoch", "epoch": 5, "objective": 0.9})
    assert _exploit_file(tmp_path, "0")["donor"] == "1" and _exploit_file(tmp_path, "1") is None


@pytest.mark.backend
def test_load_state_copies_the_donors_optimizer_but_not_its_learning_rate() -> None:
    import keras

    from ktsweep.execution.trial_checkpoint import load_state

    def model(rate: float) -> Any:
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.compile(keras.optimizers.Adam(rate), "mse")
        return m

    donor = model(1e-2)
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.zeros((32, 2))
    donor.fit(x, y, epochs=2, batch_size=8, verbose=0)
    recipient = model(5e-4)
    optimizer = [v.numpy() for v in donor.optimizer.variables]
    assert load_state(recipient, donor.get_weights(), optimizer, keep_learning_rate=True)
    assert all(np.array_equal(a, b) for a, b in zip(recipient.get_weights(), donor.get_weights()))
    assert int(recipient.optimizer.iterations.numpy()) == 8  # the donor's step count and moments go on
    assert float(recipient.optimizer.learning_rate.numpy()) == pytest.approx(5e-4)  # the perturbed rate stays
    moments = [v for v in recipient.optimizer.variables if "momentum" in v.name]
    assert moments and all(np.any(v.numpy() != 0) for v in moments)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.compile(keras.optimizers.SGD(0.1), "mse")  # another optimizer: weights load, its state starts afresh
    assert not load_state(other, donor.get_weights(), optimizer, keep_learning_rate=True)


@pytest.mark.parametrize(("overrides", "message"), [
    (["tuner=hyperband"], r"scheduler=pbt cannot be combined with tuner=hyperband"),
    (["scheduler.perturbation_interval=6"], r"scheduler.perturbation_interval=6 must be between 1 and sweep.epochs-1=5"),
    (["sweep.final.retrain=true"], r"set sweep.final.retrain=false"),
    (["scheduler.quantile_fraction=0.7"], r"scheduler.quantile_fraction must be in \(0, 0.5\]"),
    (["scheduler.mutable=[]"], r"scheduler.mutable=\[\] leaves nothing to perturb"),
    (["tuner=grid"], r"scheduler=pbt trains sweep.max_trials trials as its population; set sweep.max_trials"),
    (["scheduler.perturbation_interval=4", "scheduler.burn_in=5"], r"scheduler.burn_in=5 leaves no exploit: the first "
                                                                   r"comes after 8 epochs"),
])
def test_pbt_config_refusals(overrides: list[str], message: str) -> None:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.core.errors import UsageError

    with pytest.raises(UsageError, match=message):
        validate(compose(["scheduler=pbt", "sweep.epochs=6", *overrides]))


def test_a_mutable_name_outside_the_space_is_refused_before_any_trial(ray_session: Any, tmp_path: Path) -> None:
    import pbt_helpers
    from sklearn.datasets import load_digits

    import ktsweep
    from ktsweep.core.errors import UsageError

    x, y = load_digits(return_X_y=True)
    with pytest.raises(UsageError, match=r"scheduler.mutable names lr, which the search space does not declare "
                                         r"\(it has units, learning_rate\); fix scheduler.mutable"):
        ktsweep.sweep(pbt_helpers.build_model, x, y, epochs=4, max_trials=2, scheduler="pbt", root=str(tmp_path),
                      register=False, overrides=["scheduler.mutable=[lr]"])


def _events(log: list[dict[str, Any]], trial: str, epoch: int, event: str) -> list[dict[str, Any]]:
    return [line for line in log if line["trial"] == trial and line["epoch"] == epoch and line["event"] == event]


def check_exploits_from_the_weights(log: list[dict[str, Any]], lineages: dict[str, list[dict[str, Any]]]) -> int:
    """Each exploit, from what the model held: the recipient's first epoch after it starts from the donor's
    weights and optimizer step at the donor's epoch, with the perturbed learning rate. Returns how many."""
    checked = 0
    for trial, lineage in lineages.items():
        for entry in lineage:
            if "skipped" in entry:
                continue
            (after,) = _events(log, trial, entry["epoch"] + 1, "begin")
            # the donor's state at its epoch: what it trained, or what it copied itself then (a donor
            # that is no other's copy is preferred, but is not always there: schedulers.EpochPBT)
            copied = any(e["epoch"] == entry["donor_epoch"] and "skipped" not in e for e in lineages.get(entry["donor"], []))
            (donor,) = _events(log, entry["donor"], entry["donor_epoch"] + copied, "begin" if copied else "end")
            (own,) = _events(log, trial, entry["epoch"], "end")
            assert after["weights"] == donor["weights"] != own["weights"], (trial, entry)
            assert after["iterations"] == donor["iterations"]
            assert after["learning_rate"] == pytest.approx(entry["hp"]["learning_rate"][1], rel=1e-6)
            assert entry["hp"]["learning_rate"][0] == pytest.approx(own["learning_rate"], rel=1e-6)
            checked += 1
    return checked


def test_a_pbt_sweep_exploits_from_the_donors_state(ray_session: Any, store_root: Path, tmp_path: Path,
                                                    mlflow_client: Any) -> None:
    import pbt_helpers
    from sklearn.datasets import load_digits

    import ktsweep
    from ktsweep.dashboards.report import build_report
    from ktsweep.registry.pull import pull

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    result = ktsweep.sweep(
        pbt_helpers.build_model, x[:1200], y[:1200], validation_data=(x[1200:1500], y[1200:1500]),
        test_data=(x[1500:], y[1500:]), epochs=6, max_trials=4, objective="val_accuracy", scheduler="pbt",
        root=str(store_root), callbacks=[pbt_helpers.WeightLog(str(tmp_path), wait_for=4)], max_concurrent=4, cpus_per_trial=0.5,
        overrides=["scheduler.quantile_fraction=0.5"],
    )
    assert result.status == "FINISHED" and result.completed == 4 and result.failed == 0
    experiment = mlflow_client.get_experiment_by_name("ktsweep").experiment_id
    runs = {r.data.tags[TAG_TRIAL]: r for r in find_runs(mlflow_client, experiment, sweep=result.name, kind="trial")}
    lineages = {t: json.loads(r.data.tags[TAG_PBT_LINEAGE]) for t, r in runs.items() if TAG_PBT_LINEAGE in r.data.tags}
    assert lineages, "no exploit happened: the test shows nothing"
    assert check_exploits_from_the_weights(pbt_helpers.read_log(str(tmp_path)), lineages) >= 1

    for trial, run in runs.items():
        steps = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(6)), (trial, steps)  # continuous steps across exploits
        lineage = [e for e in lineages.get(trial, []) if "skipped" not in e]
        if not lineage:  # never told to exploit, or told only when its donor had moved on (skipped)
            assert run.data.tags.get(TAG_PBT_EXPLOITS, "0") == "0"
            continue
        assert run.data.tags[TAG_PBT_EXPLOITS] == str(len(lineage))
        assert run.data.tags[TAG_PBT_DONOR] == lineage[-1]["donor"]
        rates = {m.step: m.value for m in mlflow_client.get_metric_history(run.info.run_id, f"{HP_METRIC}learning_rate")}
        assert rates[0] == pytest.approx(float(run.data.params["learning_rate"]))  # the params are the first values
        assert rates[lineage[-1]["epoch"] + 1] == pytest.approx(lineage[-1]["hp"]["learning_rate"][1])
        final = run.data.tags[f"{TAG_FINAL_HP}learning_rate"]  # where it ended, as the oracle has it
        assert float(final) == pytest.approx(lineage[-1]["hp"]["learning_rate"][1])

    # The report draws the lineage and the schedules; the card names the published trial's exploits.
    page = build_report(mlflow_client, experiment, result.name)
    assert "Population lineage" in page and "Schedule of learning_rate" in page
    assert f"{sum(len([e for e in v if 'skipped' not in e]) for v in lineages.values())} exploits" in page
    card = pull(mlflow_client, experiment, result.name, out=str(tmp_path / "pulled")).card
    assert card["pbt"]["exploits"][result.best_trial_id] == lineages.get(result.best_trial_id, [])
    assert result.best_hyperparameters["learning_rate"] == pytest.approx(float(
        runs[result.best_trial_id].data.tags.get(f"{TAG_FINAL_HP}learning_rate",
                                                 runs[result.best_trial_id].data.params["learning_rate"])))
    assert result.test_metrics["test_accuracy"] > 0.1  # the published model, on the test split: above chance


@pytest.mark.slow
def test_a_pbt_sweep_killed_after_an_exploit_resumes_the_population(tmp_path: Path) -> None:
    """The driver (and its workers) killed once a trial has exploited: after ``ktsweep resume`` no trial
    trains epoch 0 again, the exploited trial goes on with its perturbed learning rate, and its run's
    lineage is whole. (A trial that had no checkpoint yet starts over, as any trial would.)"""
    from mlflow import MlflowClient
    from test_cli import KTSWEEP, ktsweep, user_env
    from test_trial_resume import kill_and_wait

    from ktsweep.tracking.records import local_uri

    tests = str(Path(__file__).resolve().parent)
    env = {**user_env(), "PYTHONPATH": tests, "KTSWEEP_TEST_WEIGHT_LOG": str(tmp_path)}
    name = "pbt-killed"
    args = ["run", "hypermodel._target_=pbt_helpers.LoggedHyperModel", f"sweep.code_dir={tests}", "data=digits",
            "scheduler=pbt", "scheduler.perturbation_interval=2", "scheduler.quantile_fraction=0.5",
            "sweep.max_trials=4", "sweep.epochs=16", "sweep.batch_size=8", "sweep.objective=val_accuracy",
            "executor.max_concurrent=4", "executor.cpus_per_trial=0.5", "tracking.register=false",
            f"sweep.name={name}"]
    proc = subprocess.Popen([KTSWEEP, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    trials_dir = tmp_path / "ktsweep-runs" / "sweeps" / name / "trials"
    deadline = time.time() + 300
    try:
        while not any(json.loads(state.read_text()).get("lineage") for state in trials_dir.glob("trial_*/state.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "no exploit within 300 s"
            time.sleep(0.2)
        states = {path.parent.name.removeprefix("trial_"): json.loads(path.read_text())
                  for path in trials_dir.glob("trial_*/state.json")}
        os.killpg(proc.pid, signal.SIGKILL)
        exploited = {trial: state["lineage"] for trial, state in states.items() if state.get("lineage")}
        proc.wait()
        before = pbt_helpers_log(tmp_path)
        for pid in {line["pid"] for line in before}:  # the trials' workers went down with the machine
            kill_and_wait(pid)  # (only these: this test session's own Ray must live on)
        done = ktsweep("resume", name, cwd=tmp_path, env={"PYTHONPATH": tests, "KTSWEEP_TEST_WEIGHT_LOG": str(tmp_path)})
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = pbt_helpers_log(tmp_path)
    after = log[len(before):]
    assert after, "nothing trained after the resume"
    for trial, state in states.items():  # a trial with a checkpoint goes on from it (a later one at most)
        assert len(_events(log, trial, 0, "begin")) == 1, trial
        resumed = [line for line in after if line["trial"] == trial and line["event"] == "begin"]
        assert not resumed or resumed[0]["epoch"] >= state["epoch"] + 1, (trial, state["epoch"], resumed[0])
    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    runs = {r.data.tags[TAG_TRIAL]: r for r in find_runs(client, experiment, sweep=name, kind="trial")}
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs.values())
    went_on = 0
    for trial, lineage in exploited.items():
        recorded = json.loads(runs[trial].data.tags[TAG_PBT_LINEAGE])
        assert recorded[:len(lineage)] == lineage  # the exploits before the kill are still on its run
        resumed = [line for line in after if line["trial"] == trial and line["event"] == "begin"]
        if resumed and "skipped" not in lineage[-1]:  # it went on with the values of its last exploit
            before_kill = [e for e in recorded if e["epoch"] < resumed[0]["epoch"] and "skipped" not in e]
            assert resumed[0]["learning_rate"] == pytest.approx(before_kill[-1]["hp"]["learning_rate"][1], rel=1e-6)
            went_on += 1
        steps = [m.step for m in client.get_metric_history(runs[trial].info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(16))
    assert went_on or all("skipped" in lineage[-1] for lineage in exploited.values())


def pbt_helpers_log(directory: Path) -> list[dict[str, Any]]:
    import pbt_helpers

    return pbt_helpers.read_log(str(directory))


def test_a_population_larger_than_the_concurrency_gets_one_line(capfd: Any) -> None:
    from ktsweep.search.experiment import say_population

    capfd.readouterr()  # what the imports printed
    say_population(2, 8, 1.0)
    assert capfd.readouterr().err == ("ktsweep: scheduler=pbt: 2 of the population of 8 train at once, the others "
                                      "start as those finish; to train it together: executor.max_concurrent=8 "
                                      "executor.cpus_per_trial=0.25\n")
    say_population(8, 8, 0.25)
    assert capfd.readouterr().err == ""


def test_a_long_lineage_keeps_its_newest_exploits_within_the_tag_limit() -> None:
    from ktsweep.tracking.mlflow_callback import lineage_tag
    from ktsweep.tracking.records import MAX_TAG, json_tag

    lineage = [{"epoch": e, "donor": "01", "donor_epoch": e, "before": {"learning_rate": 0.1}, "after": {}}
               for e in range(400)]
    kept = json.loads(lineage_tag(lineage))
    assert len(json.dumps(kept)) <= MAX_TAG < len(json.dumps(lineage))
    assert kept[-1]["epoch"] == 399 and kept == lineage[-len(kept):]  # the newest, in order
    assert json.loads(json_tag([f"trial-{i:04d}" for i in range(2000)]))[:2] == ["trial-0000", "trial-0001"]
    huge = {"epoch": 3, "donor": "07", "donor_epoch": 3, "before": {"x": "y" * MAX_TAG}}
    assert json.loads(lineage_tag([huge])) == [{"epoch": 3, "donor": "07", "donor_epoch": 3}]
