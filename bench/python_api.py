"""The same small sweep through ``tuner.search`` and through ``ktsweep.sweep``, side by side.

Each contender runs in a fresh Python process (cold: imports, Ray start, MLflow set-up all counted),
alternating, so the ratio holds on a noisy machine:

    .venv/bin/python bench/python_api.py --reps 2 --trials 12 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

SCRIPT = """
import json, sys, time
started = time.time()
import keras, keras_tuner as kt, numpy as np
from sklearn.datasets import load_digits

def build_model(hp):
    model = keras.Sequential([keras.layers.Flatten()])
    for _ in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(hp.Int("units", 16, 256), activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

mode, root, trials, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = load_digits(); x = (d.data / 16).astype("float32"); y = d.target
x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=trials, seed=42,
                        directory=root, project_name=mode)
if mode == "search":
    tuner.search(x_train, y_train, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
else:
    import ktsweep
    ktsweep.sweep(tuner, x_train, y_train, epochs=epochs, validation_data=(x_val, y_val), root=root + "/runs",
                  register=False, overrides=["sweep.report=false"])
best = tuner.oracle.get_best_trials(1)[0].score
print(json.dumps({"seconds": time.time() - started, "best": best, "trials": len(tuner.oracle.trials)}))
"""


def run(mode: str, trials: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as root:
        started = time.time()
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode, root, str(trials), str(epochs)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall"] = time.time() - started  # process start to exit, as a user waits
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"search": [], "sweep": []}
    for rep in range(args.reps):
        for mode in ("search", "sweep") if rep % 2 == 0 else ("sweep", "search"):
            rows[mode].append(run(mode, args.trials, args.epochs))
            print(f"rep {rep} {mode}: {rows[mode][-1]}", flush=True)
    mean = {mode: sum(r["wall"] for r in results) / len(results) for mode, results in rows.items()}
    print(f"RandomSearch {args.trials} x {args.epochs} on digits, {args.reps} alternating reps, wall time to exit:")
    print(f"  tuner.search  {mean['search']:.1f} s   best {[round(r['best'], 4) for r in rows['search']]}")
    print(f"  ktsweep.sweep {mean['sweep']:.1f} s   best {[round(r['best'], 4) for r in rows['sweep']]}")
    print(f"  speed-up {mean['search'] / mean['sweep']:.2f}x")


if __name__ == "__main__":
    main()
