"""What ``tuner.search`` takes, ktsweep takes: tf.data, PyDataset, image folders, and loaders each worker runs.

The loaders used here are in tests/pipeline_loaders.py (importable in the session's Ray workers); the
image folder is scikit-learn's digits written as PNGs (``ktsweep.data.images.write_digits_folder``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ktsweep.core.errors import UsageError
from ktsweep.tracking.records import find_runs

TESTS = Path(__file__).resolve().parent
SMALL = ["sweep.epochs=2", "sweep.report=false", "hypermodel.space.n_hidden.max=1"]
CALLS = Path(os.environ.get("TMPDIR", "/tmp")) / "ktsweep-pipeline-calls"  # pipeline_loaders' default calls_dir


@pytest.fixture(scope="module")
def digits_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Digits as an image folder for training and validation, and every fifth image in a test folder."""
    from ktsweep.data.images import write_digits_folder

    root = tmp_path_factory.mktemp("images")
    train, test = root / "digits", root / "digits-test"
    write_digits_folder(str(train))
    for label in os.listdir(train):
        (test / label).mkdir(parents=True)
        for name in sorted(os.listdir(train / label))[::5]:
            shutil.move(train / label / name, test / label / name)
    return train, test


def calls_per_process() -> Counter:
    return Counter(name.split("-")[0] for name in os.listdir(CALLS)) if CALLS.exists() else Counter()


def card_of(outcome: Any, client: Any) -> dict[str, Any]:
    path = client.download_artifacts(outcome.parent_run_id, "bundle/card.json")
    return json.loads(Path(path).read_text())


# -- loaders that run in the workers ----------------------------------------------------------------


@pytest.mark.backend
def test_a_loader_runs_once_per_worker_process_and_never_in_the_driver(run_sweep: Any, mlflow_client: Any) -> None:
    shutil.rmtree(CALLS, ignore_errors=True)
    outcome, _ = run_sweep(*SMALL, "data._target_=pipeline_loaders.digits_tf_data", "data.load_in=workers",
                           "sweep.max_trials=4", "sweep.final.retrain=true")
    assert outcome.status == "FINISHED" and outcome.completed == 4
    calls = calls_per_process()
    trials = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    trial_pids = {run.data.tags["ktsweep.worker.pid"] for run in trials}
    assert str(os.getpid()) not in calls  # the driver never loaded it
    assert trial_pids <= set(calls)  # every trial's worker loaded it itself...
    assert max(calls.values()) == 1  # ...once, whatever number of trials it ran
    assert len(trials) > len(trial_pids)  # (some worker did run several)
    assert {"test_accuracy", "test_loss"} <= set(outcome.test_metrics)  # the loader's own test split, in a worker
    dataset = mlflow_client.get_run(outcome.parent_run_id).inputs.dataset_inputs[0].dataset
    assert json.loads(dataset.source) == {"tags": {"mlflow.source.name": "pipeline_loaders.digits_tf_data"}}
    assert json.loads(dataset.profile)["loaded_in"] == "workers"
    card = card_of(outcome, mlflow_client)["data"]
    assert card["loaded_in"] == "workers" and card["n_classes"] == 10
    assert card["input_signature"] == {"shape": [None, 64], "dtype": "float32"}


def test_worker_loaded_arrays_through_hyperband_normalization_and_an_ensemble(run_sweep: Any, mlflow_client: Any) -> None:
    """ktsweep's own loader run in the workers: the probe gives the MLP's Normalization its statistics,
    Hyperband's continued trials load their parents' weights, and the ensemble is tested in a worker."""
    outcome, _ = run_sweep("data=california_housing", "data.load_in=workers", "hypermodel=mlp_regressor",
                           "tuner=hyperband", "sweep.epochs=3", "hypermodel.space.n_hidden.max=1",
                           "hypermodel.space.n_neurons.max=16", "sweep.final.ensemble=2", "sweep.report=false",
                           "tracking.register=false")
    assert outcome.status == "FINISHED" and outcome.failed == 0 and outcome.completed >= 4
    trials = find_runs(mlflow_client, outcome.experiment_id, sweep=outcome.name, kind="trial")
    continued = [run for run in trials if run.data.params.get("tuner/initial_epoch") not in (None, "0")]
    assert continued  # Hyperband's hand-off ran on worker-loaded data
    assert 0 < outcome.test_metrics["test_loss"] < 2.0  # the housing target's variance is ~1.3: it learned something
    assert "ensemble of 2" in mlflow_client.get_run(outcome.parent_run_id).data.tags["ktsweep.final"]


@pytest.mark.parametrize("load_in", [pytest.param("workers", marks=pytest.mark.backend), "driver"])
def test_image_folder_sweep_with_a_cnn(load_in: str, run_sweep: Any, mlflow_client: Any,
                                       digits_folders: tuple[Path, Path]) -> None:
    """In the workers (image_folder's default) or read into arrays in the driver: the same folder, the same digest."""
    from ktsweep.data.images import folder_digest, list_images

    train, test = digits_folders
    outcome, _ = run_sweep("experiment=images_cnn", f"data.path={train}", f"data.test_path={test}",
                           f"data.load_in={load_in}", "sweep.epochs=3", "tuner.max_trials=2", "sweep.report=false")
    assert outcome.status == "FINISHED" and outcome.completed == 2
    assert outcome.test_metrics["test_accuracy"] > 0.5  # 8x8 digits, three epochs: well above chance (0.1)
    dataset = mlflow_client.get_run(outcome.parent_run_id).inputs.dataset_inputs[0].dataset
    listing = [(str(train), name) for name in list_images(str(train), "x")[1]]
    listing += [(str(test), name) for name in list_images(str(test), "x")[1]]
    assert json.loads(dataset.source)["uri"] == str(train)
    assert dataset.digest == folder_digest(listing)
    card = card_of(outcome, mlflow_client)["data"]
    assert card["input_signature"] == {"shape": [None, 8, 8, 1], "dtype": "float32"}
    assert card["loaded_in"] == load_in and card["n_classes"] == 10
    if load_in == "workers":
        profile = json.loads(dataset.profile)
        assert profile["files"] == 1797 and profile["test"] == len(listing) - profile["train"] - profile["val"]
        assert card["feature_names"] == [str(i) for i in range(10)] and card["files"] == 1797


def test_bad_data_in_a_worker_is_one_line_before_any_trial(run_sweep: Any, tmp_path: Path,
                                                           digits_folders: tuple[Path, Path]) -> None:
    one_class = tmp_path / "one"
    shutil.copytree(digits_folders[0] / "3", one_class / "3")
    with pytest.raises(UsageError, match=r"holds images of one class only \(3\)"):
        run_sweep("experiment=images_cnn", f"data.path={one_class}")
    with pytest.raises(UsageError, match=r"training split's \(x, y\) elements have shapes \(\(64,\), \(\)\) but the "
                                         r"validation split's have \(\(32,\), \(\)\)"):
        run_sweep(*SMALL, "data._target_=pipeline_loaders.mismatched_shapes", "data.load_in=workers")


# -- the Python API: what tuner.search takes --------------------------------------------------------


def _digits_pipelines(kind: str) -> tuple[Any, Any]:
    x, y = _digits()
    if kind == "tf.data":
        import tensorflow as tf

        return (tf.data.Dataset.from_tensor_slices((x[:1200], y[:1200])).batch(50),
                tf.data.Dataset.from_tensor_slices((x[1200:], y[1200:])).batch(50))
    import pipeline_loaders

    splits = pipeline_loaders.digits_py_dataset(str(CALLS))
    return splits.train, splits.validation


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype("float32"), bunch.target


def _build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hp.Int("units", 16, 48, step=16), activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kind", ["tf.data", "PyDataset"])
def test_python_api_takes_a_dataset_as_tuner_search_does(kind: str, ray_session: Any, store_root: Path,
                                                         mlflow_client: Any, tmp_path: Path) -> None:
    import keras_tuner as kt

    import ktsweep

    train, val = _digits_pipelines(kind)
    tuner = kt.RandomSearch(_build_model, objective="val_accuracy", max_trials=2, seed=1, directory=str(tmp_path),
                            project_name="kt")
    result = ktsweep.sweep(tuner, train, epochs=2, validation_data=val, root=str(store_root), register=False)
    assert result.status == "FINISHED" and result.completed == 2 and len(tuner.oracle.trials) == 2
    expected = "50" if kind == "tf.data" else "64"  # the dataset's own batches, kept
    assert mlflow_client.get_run(result.run_id).data.params["batch_size"] == expected
    assert tuner.get_best_models(1)[0].predict(_digits()[0][:3], verbose=0).shape == (3, 10)


@pytest.mark.backend
def test_python_api_data_function_runs_in_the_workers(ray_session: Any, store_root: Path, tmp_path: Path) -> None:
    import keras_tuner as kt
    import pipeline_loaders

    import ktsweep

    shutil.rmtree(CALLS, ignore_errors=True)
    tuner = kt.RandomSearch(_build_model, objective="val_accuracy", max_trials=2, seed=2, directory=str(tmp_path),
                            project_name="kt")
    result = ktsweep.sweep(tuner, data=pipeline_loaders.digits_py_dataset, epochs=2, root=str(store_root),
                           register=False)
    assert result.status == "FINISHED" and result.completed == 2
    assert str(os.getpid()) not in calls_per_process() and calls_per_process()
    assert {"test_accuracy", "test_loss"} <= set(result.test_metrics)


@pytest.mark.slow
def test_a_loader_in_the_workers_keeps_several_inputs_and_sample_weights(ray_session: Any, store_root: Path,
                                                                        mlflow_client: Any) -> None:
    """What ``materialise`` refuses travels as the loader's own pipeline: a model of two inputs trains, and
    its zero sample weights reach fit() (the weighted training loss is exactly 0)."""
    import keras
    import pipeline_loaders

    import ktsweep
    from ktsweep.tracking.records import find_runs

    def build(hp: Any) -> Any:
        wide, deep = keras.Input((8,), name="wide"), keras.Input((64,), name="deep")
        hidden = keras.layers.Dense(hp.Int("units", 8, 16, step=8), activation="relu")(deep)
        out = keras.layers.Dense(10, activation="softmax")(keras.layers.Concatenate()([wide, hidden]))
        model = keras.Model({"wide": wide, "deep": deep}, out)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    result = ktsweep.sweep(build, data=pipeline_loaders.two_inputs_weighted, epochs=2, max_trials=2,
                           objective="val_accuracy", root=str(store_root), register=False)
    assert result.status == "FINISHED" and result.completed == 2
    experiment = mlflow_client.get_experiment_by_name("ktsweep").experiment_id
    runs = find_runs(mlflow_client, experiment, sweep=result.name, kind="trial")
    losses = [m.value for r in runs for m in mlflow_client.get_metric_history(r.info.run_id, "loss")]
    assert len(losses) == 4 and all(loss == 0.0 for loss in losses)


def test_python_api_refuses_what_it_cannot_ship(tmp_path: Path) -> None:
    import tensorflow as tf

    import ktsweep

    x, y = _digits()
    endless = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    with pytest.raises(UsageError, match=r"endless tf.data.Dataset \(repeat\(\)\); pass a function that builds it"):
        ktsweep.sweep(_build_model, endless, root=str(tmp_path))
    big = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with pytest.raises(UsageError, match=r"holds more than 0.1 MB, too much to copy into every worker"):
        ktsweep.sweep(_build_model, big, max_materialise_mb=0.1, root=str(tmp_path))
    with pytest.raises(UsageError, match="y must not be given when x is a"):
        ktsweep.sweep(_build_model, big, y, root=str(tmp_path))
    with pytest.raises(UsageError, match="give either data= .* or x"):
        ktsweep.sweep(_build_model, x, y, data=lambda: None, root=str(tmp_path))


# -- pieces, without Ray ----------------------------------------------------------------------------


def test_image_folder_checks(tmp_path: Path, digits_folders: tuple[Path, Path]) -> None:
    from ktsweep.data.images import list_images

    with pytest.raises(UsageError, match="image folder not found"):
        list_images(str(tmp_path / "nowhere"), "data.path")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"\x89PNG....")
    with pytest.raises(UsageError, match="has no class subfolders with images"):
        list_images(str(tmp_path / "flat"), "data.path")
    broken = tmp_path / "broken"
    for label in ("0", "1"):
        shutil.copytree(digits_folders[0] / label, broken / label)
    (broken / "1" / "zz.png").write_text("not a picture")
    with pytest.raises(UsageError, match=r"1 file\(s\) are not readable images, e.g. 1/zz.png"):
        list_images(str(broken), "data.path")
    classes, files = list_images(str(digits_folders[0]), "data.path")
    assert classes == [str(i) for i in range(10)] and len(files) == 1797 - sum(
        len(os.listdir(digits_folders[1] / label)) for label in classes)


def _load_without_describe(path: str, image_size: Any, color_mode: str, validation_split: float, test_path: str,
                           batch_size: int, seed: int) -> Any:
    """The image folder's loader without its ``ktsweep_describe``: the probe then loads the folder (as a user's loader)."""
    from ktsweep.data.images import load_image_folder

    return load_image_folder(path=path, image_size=image_size, color_mode=color_mode, validation_split=validation_split,
                             test_path=test_path, batch_size=batch_size, seed=seed)


@functools.wraps(_load_without_describe)
def _renaming_wrapper(**kwargs: Any) -> Any:
    """A user's wrapper around the image folder's loader (``functools.wraps`` copies its attributes)."""
    from ktsweep.data.images import load_image_folder

    splits = load_image_folder(**kwargs)
    return dataclasses.replace(splits, class_names=[f"digit {name}" for name in splits.class_names])


_renaming_wrapper.__wrapped__ = _load_without_describe  # as wraps(load_image_folder) would leave it
_renaming_wrapper.ktsweep_describe = "copied by functools.wraps"  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [(8, 8), (12, 10)])
def test_an_image_folders_probe_describes_it_without_tensorflow(size: tuple[int, int], tmp_path: Path,
                                                                digits_folders: tuple[Path, Path]) -> None:
    """The probe's report from the listing and five images decoded with Pillow (resized as Keras resizes) is the
    report that loading the folder gives, its rows are the folder's own pixels, and describing imports no framework."""
    import keras

    from ktsweep.data.pipelines import WorkerData

    train, test = digits_folders
    kwargs = dict(path=str(train), image_size=list(size), color_mode="grayscale", validation_split=0.2,
                  test_path=str(test), batch_size=32, seed=1)
    described = WorkerData("image_folder", str(train), "ktsweep.data.images.load_image_folder", kwargs).summarise()
    loaded = WorkerData("image_folder", str(train), _load_without_describe, kwargs).summarise()
    for name in ("task", "n_classes", "feature_names", "input_shape", "dtype", "split_sizes", "files", "digest",
                 "has_test", "example_is_arrays"):
        assert getattr(described, name) == getattr(loaded, name), name
    x, y = described.example
    assert x.shape == (5, *size, 1) and x.dtype == loaded.example[0].dtype and y.dtype == loaded.example[1].dtype
    assert len(set(y.tolist())) == 5  # rows from across the classes
    folder = keras.utils.image_dataset_from_directory(str(train), color_mode="grayscale", image_size=size,
                                                      shuffle=False, verbose=False)
    pixels, labels = (np.concatenate(part) for part in zip(*((a.numpy(), b.numpy()) for a, b in folder)))
    for row, label in zip(x, y):  # each row is one of the folder's images as Keras yields it, with its label
        same = np.flatnonzero(np.abs(pixels - row).max(axis=(1, 2, 3)) < 1e-3)
        assert same.size and label in labels[same]
    if size != (8, 8):
        return
    wrapped = WorkerData("image_folder", str(train), _renaming_wrapper, kwargs).summarise()
    assert wrapped.feature_names == tuple(f"digit {i}" for i in range(10))  # loaded: what the wrapper returns

    code = ("import sys, json; from ktsweep.data.pipelines import WorkerData; "
            f"r = WorkerData('image_folder', 'x', 'ktsweep.data.images.load_image_folder', {kwargs!r}).summarise(); "
            "print(json.dumps([r.input_shape, sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [[8, 8, 1], []]


def test_what_an_image_folders_probe_refuses(tmp_path: Path, digits_folders: tuple[Path, Path]) -> None:
    """What Keras' decoders would fail on in every trial stops the probe: one line each."""
    from PIL import Image

    from ktsweep.data.images import _decode, describe_image_folder

    def folder(name: str, files: dict[str, bytes | Image.Image]) -> str:
        for relative, content in files.items():
            (tmp_path / name / relative).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (tmp_path / name / relative).write_bytes(content)
            else:
                content.save(tmp_path / name / relative)
        return str(tmp_path / name)

    pixels = Image.fromarray(np.arange(64, dtype="uint8").reshape(8, 8))
    broken = folder("broken", {f"{label}/{i}.png": b"\x89PNG\r\n\x1a\n" + b"broken" * 10 for label in "ab" for i in range(3)})
    with pytest.raises(UsageError, match=r"broken/a/0.png is not a readable image \(.+\); remove or replace it"):
        describe_image_folder(path=broken, image_size=(8, 8), color_mode="grayscale")
    gifs = folder("gifs", {f"{label}/{i}.gif": pixels for label in "ab" for i in range(3)})
    with pytest.raises(UsageError, match=r"^6 GIF file\(s\), e.g. .*gifs/a/0.gif, cannot be read as "
                                         r"data.color_mode=grayscale \(Keras reads GIF as rgb"):
        describe_image_folder(path=gifs, image_size=(8, 8), color_mode="grayscale")
    assert describe_image_folder(path=gifs, image_size=(8, 8), color_mode="rgb", validation_split=0.5).example[0].shape[-1] == 3
    tiny = folder("tiny", {f"{label}/{i}.png": pixels for label in "ab" for i in range(2)})
    with pytest.raises(UsageError, match=r"has 4 images: data.validation_split=0.2 leaves no validation images"):
        describe_image_folder(path=tiny, image_size=(8, 8), color_mode="grayscale")

    import tensorflow as tf  # a 16-bit grayscale PNG: Keras (TensorFlow's decoder) keeps the high byte

    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[256, 1000], [40000, 65535]], dtype="uint16")).save(deep)
    expected = tf.image.decode_image(tf.io.read_file(str(deep)), channels=1).numpy().astype("float32")
    np.testing.assert_array_equal(_decode(str(deep), (2, 2), "grayscale"), expected)


def test_what_a_loader_returns_is_checked() -> None:
    import pipeline_loaders

    from ktsweep.data.pipelines import WorkerData, as_splits

    with pytest.raises(UsageError, match="returned str; a loader run in the workers returns ktsweep.Splits"):
        as_splits(pipeline_loaders.not_data(), "pipeline_loaders.not_data")
    with pytest.raises(UsageError, match="returned no validation split"):
        as_splits({"train": (np.zeros((4, 2)), np.zeros(4))}, "f")
    from ktsweep.data.loaders import load_digits

    digits = as_splits(load_digits(name="d", val_fraction=0.2, test_fraction=0.2, seed=0), "data=digits")  # in workers
    assert digits.task == "classification" and len(digits.train[0]) + len(digits.validation[0]) + len(digits.test[0]) == 1797
    generator = WorkerData(name="g", source="pipeline_loaders.a_generator", loader=pipeline_loaders.a_generator)
    with pytest.raises(UsageError, match="returned a generator, which has no length: set sweep.steps_per_epoch"):
        generator.loaded()
    generator.steps_per_epoch = 3
    with pytest.raises(UsageError, match="set sweep.steps_per_epoch and sweep.validation_steps"):
        generator.loaded()  # an endless validation generator would never end an epoch
    generator.validation_steps = 2  # then each trial calls the loader again: a generator is used up by one fit()
    first, second = generator.feeds(), generator.feeds()
    assert first.train.x is not second.train.x and first.train.pipeline


def test_reading_a_dataset_into_arrays_and_joining_splits() -> None:
    import tensorflow as tf

    from ktsweep.data.feeds import Feed, Feeds
    from ktsweep.data.pipelines import materialise

    x, y = _digits()
    dataset = tf.data.Dataset.from_tensor_slices((x[:130], y[:130])).batch(40)
    read_x, read_y, batch = materialise(dataset, limit_mb=10, label="x")
    np.testing.assert_array_equal(read_x, x[:130])
    np.testing.assert_array_equal(read_y, y[:130])
    assert batch == 40
    joined = Feeds(Feed(dataset), Feed(dataset.take(1))).train_and_val()
    assert sum(len(b[0]) for b in joined.x) == 170
    import pipeline_loaders

    splits = pipeline_loaders.digits_py_dataset(str(CALLS))
    chained = Feeds(Feed(splits.train), Feed(splits.validation)).train_and_val().x
    assert len(chained) == len(splits.train) + len(splits.validation)
    np.testing.assert_array_equal(chained[len(splits.train)][0], splits.validation[0][0])


def test_what_arrays_cannot_hold_is_refused_not_cut() -> None:
    import keras
    import tensorflow as tf

    from ktsweep.core.errors import UsageError
    from ktsweep.data.pipelines import materialise

    x, y = _digits()
    weighted = tf.data.Dataset.from_tensor_slices((x[:100], y[:100], np.ones(100))).batch(50)
    with pytest.raises(UsageError, match=r"^train yields sample weights \(x, y, sample_weight\), which its arrays "
                                         r"would lose; pass a function that builds it instead"):
        materialise(weighted, limit_mb=10, label="train")

    class Weighted(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
            return x[index * 50:(index + 1) * 50], y[index * 50:(index + 1) * 50], np.ones(50)

    with pytest.raises(UsageError, match="yields sample weights"):
        materialise(Weighted(), limit_mb=10, label="train")
    two_inputs = tf.data.Dataset.from_tensor_slices(({"wide": x[:100, :8], "deep": x[:100]}, y[:100])).batch(50)
    with pytest.raises(UsageError, match=r"^train yields several inputs \(wide, deep\), and ktsweep reads a dataset "
                                         r"into one array of each; pass a function that builds it"):
        materialise(two_inputs, limit_mb=10, label="train")
    with pytest.raises(UsageError, match=r"yields several targets \(2 arrays\)"):
        materialise(tf.data.Dataset.from_tensor_slices((x[:100], (y[:100], y[:100]))).batch(50), limit_mb=10,
                    label="train")
    for one_input in ((x[:100],), {"image": x[:100]}):  # one array in a structure is one array
        read_x, _, _ = materialise(tf.data.Dataset.from_tensor_slices((one_input, y[:100])).batch(50), limit_mb=10,
                                   label="train")
        np.testing.assert_array_equal(read_x, x[:100])
    unlabelled = tf.data.Dataset.from_tensor_slices(x[:100]).batch(50)
    with pytest.raises(UsageError, match=r"^val yields batches without labels; yield \(x, y\) batches"):
        materialise(unlabelled, limit_mb=10, label="val")


# -- the driver stays small -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_drivers_memory_does_not_grow_with_the_image_folder(tmp_path: Path) -> None:
    """The same sweep on a folder ten times larger: the workers read the files, the driver never does.
    At 32x32 pixels the larger folder's images decode to 70 MB of float32 (7 MB for the smaller): a driver
    that read them would grow by about 60 MB."""
    from test_cli import user_env

    from ktsweep.data.images import write_digits_folder

    peaks = {}
    for copies in (1, 10):
        folder = tmp_path / f"digits-x{copies}"
        write_digits_folder(str(folder), copies=copies)
        done = subprocess.run(
            [sys.executable, str(TESTS / "driver_rss_probe.py"), str(tmp_path / f"runs-{copies}"),
             "experiment=images_cnn", f"data.path={folder}", "data.image_size=[32,32]", "tuner.max_trials=1",
             "sweep.epochs=1", "hypermodel.space.conv_blocks.max=1", "hypermodel.space.filters.values=[16]",
             "hypermodel.space.filters.default=16", "tracking.register=false", "sweep.report=false"],
            cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["completed"] == 1 and found["files"] == 1797 * copies
        peaks[copies] = found["peak_rss_mb"]
    print(f"driver peak RSS: {peaks[1]:.1f} MB (1,797 images), {peaks[10]:.1f} MB (17,970 images)")
    assert peaks[10] - peaks[1] < 10, peaks


def test_normalize_without_statistics_is_one_line() -> None:
    """ktsweep's MLP with normalize=true on a pipeline's data (no statistics before the trials) stops the sweep."""
    import keras_tuner as kt

    from ktsweep.conf.schema import MLPSpace
    from ktsweep.core.errors import FatalError
    from ktsweep.hypermodels import DataSpec, MLPClassifier

    model = MLPClassifier(space=MLPSpace(), normalize=True, objective="val_accuracy", direction="max",
                          data_spec=DataSpec((8, 8, 1), "classification", n_classes=10))
    with pytest.raises(FatalError, match="normalize=true needs the training split's statistics"):
        model.build(kt.HyperParameters())
