"""Bad configs fail before any training, with one line that names the key and the fix."""

from __future__ import annotations

import pytest

from ktsweep.conf.compose import check_overrides, compose, expand_sweep_overrides, validate
from ktsweep.core.errors import UsageError

BAD_OVERRIDES = [
    (["sweep.foo=1"], r"sweep\.foo: Key 'foo' not in 'SweepConf'.*--cfg job"),
    (["tuner=nope"], r"Could not find 'tuner/nope'.*--help"),
    (["sweep.epochs=abc"], r"sweep\.epochs: Value 'abc'.*Integer"),
    (["sweep.epochs=-1"], r"sweep\.epochs must be >= 1"),
    (["sweep.max_trials=0"], r"max_trials must be >= 1"),
    (["hypermodel.space.n_neurons.min=300"], r"hypermodel\.space\.n_neurons: range min=300 is above max=256"),
    (["hypermodel.space.n_hidden.step=20"], r"hypermodel\.space\.n_hidden: step=20 is larger than the range 0\.\.8"),
    (["hypermodel.space.learning_rate.min=0"], r"learning_rate: log sampling needs min > 0"),
    (["hypermodel.space.learning_rate.sampling=cubic"], r"sampling must be one of linear, log, reverse_log"),
    (["hypermodel.space.optimizer.values=[]"], r"optimizer: a choice needs at least one value"),
    (["hypermodel._target_=nope.Nope"], r"hypermodel\._target_='nope\.Nope' cannot be imported.*No module named 'nope'"),
    (["tuner._target_=keras_tuner.oracles.NoSuchOracle"], r"tuner\._target_=.*cannot be imported"),
    (["tuner=hyperband", "tuner.factor=1"], r"tuner\.factor must be >= 2"),
    (["tuner.alpha=1"], r"tuner\.alpha: Key 'alpha' not in 'RandomConf'"),
    (["tuner=bayesian", "tuner.alpha=-1"], r"tuner\.alpha must be > 0"),
    (["executor.cpus_per_trial=0"], r"executor\.cpus_per_trial must be > 0"),
    (["executor.cpus_per_trial=x"], r"executor\.cpus_per_trial: Value 'x'.*Float"),
    (["hypermodel.direction=up"], r"direction must be one of max, min"),
    (["data.val_fraction=0"], r"data\.val_fraction must be > 0"),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], r"must leave some training data"),
    (["sweep.name=a/b"], r"sweep\.name may hold letters"),
    (['tracking.registered_model="bob\'s model"'], r"tracking\.registered_model may not contain '.*\"bob's model\""),
    (["tracking.registered_model=' '"], r"tracking\.registered_model must not be empty"),
    (["scheduler=asha", "tuner=hyperband"], r"scheduler=asha cannot be combined with tuner=hyperband.*scheduler=none"),
    (["scheduler=asha", "sweep.epochs=9", "scheduler.grace_period=12"],
     r"scheduler\.grace_period=12 must be between 1 and sweep\.epochs=9"),
    (["scheduler=asha", "scheduler.reduction_factor=1.5"], r"scheduler\.reduction_factor must be >= 2; got 1\.5"),
    (["scheduler=median", "tuner=hyperband"], r"scheduler=median cannot be combined with tuner=hyperband"),
    (["scheduler=none", "scheduler.grace_period=2"], r"scheduler\.grace_period: Key 'grace_period' not in 'SchedulerConf'"),
    (["sweep.trial_checkpoint_every=-1"], r"sweep\.trial_checkpoint_every must be >= 0"),
    (["sweep.final.ensemble=0"], r"sweep\.final\.ensemble must be >= 1 \(1: the best trial alone\); got 0"),
    (["sweep.final.ensemble=4", "tuner.max_trials=3"],
     r"sweep\.final\.ensemble=4 averages more trials than sweep\.max_trials=3 runs; lower sweep\.final\.ensemble or raise sweep\.max_trials"),
]


@pytest.mark.parametrize("overrides, message", BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_override_names_the_problem(overrides: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        validate(compose(overrides))
    assert "\n" not in str(info.value)


def test_defaults_are_the_offline_digits_sweep() -> None:
    config = validate(compose([]))
    assert config.data.name == "digits"
    assert config.tuner._target_ == "keras_tuner.oracles.RandomSearchOracle"
    assert config.hypermodel.space.n_hidden.default == 2
    assert (config.hypermodel.space.n_neurons.min, config.hypermodel.space.n_neurons.max) == (16, 256)
    assert config.hypermodel.space.learning_rate.sampling == "log"
    assert config.hypermodel.space.optimizer.values == ["sgd", "adam"]
    assert config.sweep.max_trials == config.tuner.max_trials == 10
    assert config.sweep.objective == "val_accuracy" and config.sweep.direction == "max"


def test_ranges_are_overridable_from_the_command_line() -> None:
    config = validate(compose(["hypermodel.space.n_neurons.max=512", "sweep.max_trials=20"]))
    assert config.hypermodel.space.n_neurons.max == 512
    assert config.sweep.max_trials == 20


def test_narrowing_a_range_clamps_its_default() -> None:
    config = validate(compose(["hypermodel.space.n_hidden.max=1"]))
    assert config.hypermodel.space.n_hidden.default == 1


def test_hyperband_follows_sweep_epochs_and_has_no_trial_cap() -> None:
    config = validate(compose(["tuner=hyperband", "sweep.epochs=9"]))
    assert config.tuner.max_epochs == 9
    assert config.sweep.max_trials is None


def test_regressor_is_judged_by_val_loss_downwards() -> None:
    config = validate(compose(["hypermodel=mlp_regressor"]))
    assert (config.sweep.objective, config.sweep.direction) == ("val_loss", "min")


def test_trial_checkpoints_default_to_every_epoch_for_long_runs() -> None:
    from ktsweep.conf.schema import trial_checkpoint_every

    assert trial_checkpoint_every(validate(compose(["sweep.epochs=9"])).sweep) == 0
    assert trial_checkpoint_every(validate(compose(["sweep.epochs=10"])).sweep) == 1
    assert trial_checkpoint_every(validate(compose(["sweep.epochs=30", "sweep.trial_checkpoint_every=5"])).sweep) == 5


@pytest.mark.parametrize("preset", ["digits_quick", "housing_mlp", "housing_wide_deep", "fashion_random", "fashion_hyperband", "fashion_bayesian"])
def test_presets_compose(preset: str) -> None:
    config = validate(compose([f"experiment={preset}"]))
    assert config.sweep.epochs >= 1


def test_missing_mandatory_value_is_named() -> None:
    with pytest.raises(UsageError, match=r"data\.path: .*missing mandatory value: path"):
        validate(compose(["data=csv", "data.target=y"]))


def test_multirun_jobs_are_expanded_and_each_checked() -> None:
    jobs = expand_sweep_overrides(["tuner=random,bayesian", "sweep.epochs=2"])
    assert jobs == [["tuner=random", "sweep.epochs=2"], ["tuner=bayesian", "sweep.epochs=2"]]
    with pytest.raises(UsageError, match=r"tuner\.alpha: Key 'alpha' not in 'RandomConf'"):
        check_overrides(["tuner=bayesian,random", "tuner.alpha=0.1"], multirun=True)


def test_lr_decay_steps_gives_the_optimizer_a_decaying_rate() -> None:
    import keras
    import keras_tuner as kt
    from hydra.utils import instantiate

    from ktsweep.data.loaders import load_digits

    with pytest.raises(UsageError, match=r"hypermodel\.lr_decay_steps must be >= 0; got -1"):
        validate(compose(["hypermodel.lr_decay_steps=-1"]))
    config = validate(compose(["hypermodel.lr_decay_steps=100", "hypermodel.space.optimizer.values=[adam]"]))
    data = load_digits(name="digits", val_fraction=0.2, test_fraction=0.2, seed=0)
    model = instantiate(config.hypermodel, _convert_="object", data_spec=data.spec).build(kt.HyperParameters())
    schedule = model.optimizer._learning_rate  # the schedule itself (learning_rate is its current value)
    assert isinstance(schedule, keras.optimizers.schedules.InverseTimeDecay)
    assert float(schedule(100)) == pytest.approx(float(schedule(0)) / 2)  # lr / (1 + step / decay_steps)

    with pytest.raises(UsageError, match=r"hypermodel\.lr_decay must be one of inverse_time, cosine; got hypermodel\.lr_decay='linear'"):
        validate(compose(["hypermodel.lr_decay=linear"]))
    config = validate(compose(["hypermodel.lr_decay_steps=100", "hypermodel.lr_decay=cosine",
                               "hypermodel.space.optimizer.values=[adam]"]))
    schedule = instantiate(config.hypermodel, _convert_="object", data_spec=data.spec).build(kt.HyperParameters()).optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    start = float(schedule(0))
    assert float(schedule(50)) == pytest.approx(start * (0.01 + 0.99 * 0.5))  # half-way down the cosine
    assert float(schedule(100)) == pytest.approx(start * 0.01) == pytest.approx(float(schedule(400)))  # then flat at 1%


@pytest.mark.parametrize("loader, data", [("load_digits", "digits"), ("load_california_housing", "california_housing")])
def test_a_dataset_target_saved_before_the_layers_still_resolves(loader: str, data: str) -> None:
    """Saved overrides (``ktsweep resume``) and MLflow tags hold ``ktsweep.search.datasets.*``: read as the new path."""
    config = validate(compose([f"data={data}", f"data._target_=ktsweep.search.datasets.{loader}"]))
    assert config.data._target_ == f"ktsweep.data.loaders.{loader}"
    assert config.data.name == data  # the default loader, so the data keeps its name (not "load_digits")
