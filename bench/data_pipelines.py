"""Image-folder sweeps: arrays in the driver, tf.data in the workers, and plain keras-tuner, in one run.

The same CNN search (``experiment=images_cnn``: ktsweep's CNNClassifier, random search, the same
oracle seed) on scikit-learn's digits written as an image folder (``--copies N``: N times the files):

- ``arrays``:  ktsweep, ``data.load_in=driver``: the folder read into arrays in the driver, shipped by Ray;
- ``workers``: ktsweep, ``data.load_in=workers`` (the image_folder default): each worker reads the folder as
  ``tf.data`` with ``cache()`` and ``prefetch`` itself, the driver never does;
- ``plain``:   ``tuner.search(train_ds, validation_data=val_ds)`` on the same ``tf.data`` pipeline in one process.

Each run is a fresh process (imports, Ray and MLflow included); the order rotates between repetitions.
Prints per run and a markdown table of medians: wall seconds, the driver's peak RSS, best val_accuracy.
    .venv/bin/python bench/data_pipelines.py [--reps 3] [--trials 8] [--epochs 5] [--copies 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from sweep_speedup import timed  # noqa: E402  (a fresh process per run, its last JSON line)

CONTENDERS = ["arrays", "workers", "plain"]


def plain(folder: str, trials: int, epochs: int) -> None:
    """What a Keras Tuner user runs: the folder as tf.data (cache, prefetch), ``tuner.search`` on it."""
    started = time.perf_counter()
    from types import SimpleNamespace

    import keras_tuner as kt

    from ktsweep.conf.compose import compose, validate
    from ktsweep.data.images import load_image_folder
    from ktsweep.hypermodels.base import DataSpec
    from ktsweep.search.inputs import load_hypermodel
    from ktsweep.search.oracles import build_oracle

    config = validate(compose(overrides(folder, trials, epochs)))
    data = config.data
    splits = load_image_folder(path=folder, image_size=data.image_size, color_mode=data.color_mode,
                               batch_size=data.batch_size, validation_split=data.validation_split, seed=data.seed)
    shape = (*data.image_size, 1)
    hypermodel = load_hypermodel(config, SimpleNamespace(spec=DataSpec(shape, "classification", n_classes=10)))
    with tempfile.TemporaryDirectory() as directory:
        oracle = build_oracle(config.tuner, objective=config.sweep.objective, direction=config.sweep.direction,
                              max_trials=config.sweep.max_trials, hypermodel=hypermodel,
                              directory=os.path.join(directory, "oracle"))
        tuner = kt.Tuner(oracle=oracle, hypermodel=hypermodel, directory=directory, project_name="plain", overwrite=True)
        tuner.search(splits.train, validation_data=splits.validation, epochs=epochs, verbose=0)
        best = tuner.oracle.get_best_trials(1)[0]
        print(json.dumps({"seconds_inside": time.perf_counter() - started, "best": float(best.score),
                          "trials": len(tuner.oracle.trials),
                          "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def overrides(folder: str, trials: int, epochs: int) -> list[str]:
    return ["experiment=images_cnn", f"data.path={folder}", f"tuner.max_trials={trials}", f"sweep.epochs={epochs}",
            "tracking.register=false", "sweep.report=false"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1, help="write each digit image this many times")
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # internal: run the plain contender on this folder
    args = parser.parse_args()
    if args.plain:
        plain(args.plain, args.trials, args.epochs)
        return
    from ktsweep.data.images import write_digits_folder

    runs: dict[str, list[tuple[float, dict]]] = {who: [] for who in CONTENDERS}
    loads = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "digits")
        files = write_digits_folder(folder, copies=args.copies)
        print(f"image folder: {files} PNG files (8x8 grayscale digits, {args.copies} cop{'y' if args.copies == 1 else 'ies'})")
        sweep = overrides(folder, args.trials, args.epochs)
        for rep in range(args.reps):
            with tempfile.TemporaryDirectory(dir=scratch) as root:
                commands = {
                    "arrays": [sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *sweep, "data.load_in=driver",
                               "sweep.name=arrays"],
                    "workers": [sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *sweep, "data.load_in=workers",
                                "sweep.name=workers"],
                    "plain": [sys.executable, __file__, "--plain", folder, "--trials", str(args.trials),
                              "--epochs", str(args.epochs)],
                }
                shift = rep % len(CONTENDERS)
                for who in CONTENDERS[shift:] + CONTENDERS[:shift]:
                    seconds, info = timed(commands[who])
                    runs[who].append((seconds, info))
                    loads.append(os.getloadavg()[0])
                    print(f"  rep {rep} {who}: {seconds:.1f}s driver_rss={info['driver_rss_mb']:.0f}MB "
                          f"best={info['best']:.4f} trials={info['trials']} load={loads[-1]:.1f}", flush=True)
    medians = {who: statistics.median(s for s, _ in done) for who, done in runs.items()}
    print(f"\n{args.trials} trials x {args.epochs} epochs, {files} files, {args.reps} reps, "
          f"load {min(loads):.1f}-{max(loads):.1f}\n")
    print("| contender | wall s (median) | driver peak RSS MB | best val_accuracy (median) | time / plain |")
    print("|---|---|---|---|---|")
    for who, done in runs.items():
        rss = statistics.median(i["driver_rss_mb"] for _, i in done)
        best = statistics.median(i["best"] for _, i in done)
        print(f"| {who} | {medians[who]:.1f} | {rss:.0f} | {best:.4f} | {medians[who] / medians['plain']:.2f} |")
    print(f"\nworkers / arrays: {medians['workers'] / medians['arrays']:.2f}; "
          f"plain / workers (speed-up): {medians['plain'] / medians['workers']:.2f}")


if __name__ == "__main__":
    main()
