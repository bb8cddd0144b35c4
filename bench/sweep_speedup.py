"""Sweep speed-up: plain keras-tuner, ktsweep and Optuna (``n_jobs=2``) on the same search, in one run.

Each run is a fresh process (imports, Ray start-up and MLflow included: what a
user waits for); the order of the three rotates from one repetition to the next.
Prints a markdown table of medians and the ratios. The Optuna contender needs the
bench extra: ``pip install -c constraints.txt -e ".[bench]"``.
    .venv/bin/python bench/sweep_speedup.py [--reps 3] [--warm] [--backend jax] [CASE ...]
``--backend``: all three contenders run Keras on that backend (``KERAS_BACKEND``; default: as set).
``--warm``: ktsweep joins a local Ray started once before the runs (``ray start
--head``, then ``executor.address=auto``), as a user who keeps Ray up between
sweeps would; plain keras-tuner and Optuna are unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONTENDERS = ["plain", "ktsweep", "optuna"]


def timed(command: list[str]) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    # the last JSON line: ktsweep_sweep.py prints its own before the command's leaderboard
    return seconds, json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith('{"seconds_inside"')))


def run_case(case: str, reps: int, warm: bool = False) -> dict:
    overrides = CASES[case]
    extra = ["executor.address=auto"] if warm else []
    runs: dict[str, list[tuple[float, dict]]] = {who: [] for who in CONTENDERS}
    loads = []
    for rep in range(reps):
        with tempfile.TemporaryDirectory() as root:
            commands = {
                "plain": [sys.executable, str(BENCH / "plain_keras_tuner.py"), *overrides],
                "ktsweep": [sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *overrides, *extra],
                "optuna": [sys.executable, str(BENCH / "optuna_sweep.py"), *overrides],
            }
            shift = rep % len(CONTENDERS)  # rotate who goes first
            for who in CONTENDERS[shift:] + CONTENDERS[:shift]:
                seconds, info = timed(commands[who])
                runs[who].append((seconds, info))
                loads.append(os.getloadavg()[0])
                details = "".join(f" {key}={round(info[key], 1)}" for key in ("search_seconds", "epochs", "pruned") if key in info)
                print(f"  {case} rep {rep} {who}: {seconds:.1f}s best={info['best']:.4f} trials={info['trials']}{details} "
                      f"load={loads[-1]:.1f}", flush=True)
    row = {"case": case, "load_min": min(loads), "load_max": max(loads)}
    for who, done in runs.items():
        row[f"{who}_s"] = statistics.median(s for s, _ in done)
        row[f"{who}_best"] = statistics.median(i["best"] for _, i in done)
        row[f"{who}_trials"] = done[0][1]["trials"]
    ours = runs["ktsweep"]
    row["tracking_share"] = statistics.median(i["tracking_seconds"] / s for s, i in ours)
    row["writer_share"] = statistics.median(i.get("tracking_write_seconds", 0.0) / s for s, i in ours)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=["digits_hyperband", "digits_random", "housing_random"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="ktsweep joins a Ray started once before the runs")
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"], help="Keras backend of all three contenders")
    args = parser.parse_args()
    if importlib.util.find_spec("optuna") is None:
        raise SystemExit('optuna is not installed (the Optuna contender needs it): .venv/bin/pip install -c constraints.txt -e ".[bench]"')
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; pick from {', '.join(CASES)}")
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"reps={args.reps}; warm Ray: {args.warm}; Keras backend: {os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    if args.warm:
        os.environ["RAY_AUTH_MODE"] = "disabled"  # a private, local, short-lived Ray (as in tests/servers.py)
        ray = str(Path(sys.executable).with_name("ray"))
        subprocess.run([ray, "start", "--head", f"--num-cpus={os.cpu_count()}", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, capture_output=True)
    try:
        rows = [run_case(case, args.reps, args.warm) for case in args.cases]
    finally:
        if args.warm:
            subprocess.run([ray, "stop", "--force"], capture_output=True)
    print("\n| case | trials (plain / ktsweep / Optuna) | plain keras-tuner (s) | ktsweep (s) | Optuna n_jobs=2 (s) "
          "| speed-up vs plain | speed-up vs Optuna | best plain | best ktsweep | best Optuna "
          "| sweep waiting on MLflow | MLflow writer thread busy | load average (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['plain_trials']} / {r['ktsweep_trials']} / {r['optuna_trials']} "
              f"| {r['plain_s']:.1f} | {r['ktsweep_s']:.1f} | {r['optuna_s']:.1f} "
              f"| {r['plain_s'] / r['ktsweep_s']:.2f}x | {r['optuna_s'] / r['ktsweep_s']:.2f}x "
              f"| {r['plain_best']:.4f} | {r['ktsweep_best']:.4f} | {r['optuna_best']:.4f} "
              f"| {100 * r['tracking_share']:.1f}% | {100 * r['writer_share']:.1f}% "
              f"| {r['load_min']:.1f}-{r['load_max']:.1f} |")


if __name__ == "__main__":
    main()
