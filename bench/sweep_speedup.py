"""Sweep speed-up: plain keras-tuner vs ktsweep on the same search, alternating, in one run.

Each run is a fresh process (imports, Ray start-up and MLflow included: what a
user waits for). Prints a markdown table of medians and the ratio.
    .venv/bin/python bench/sweep_speedup.py [--reps 3] [--warm] [CASE ...]
``--warm``: ktsweep joins a local Ray started once before the runs (``ray start
--head``, then ``executor.address=auto``), as a user who keeps Ray up between
sweeps would; plain keras-tuner is unchanged.
"""

from __future__ import annotations

import argparse
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


def timed(command: list[str]) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def run_case(case: str, reps: int, warm: bool = False) -> dict:
    overrides = CASES[case]
    extra = ["executor.address=auto"] if warm else []
    plain, ours = [], []
    for rep in range(reps):
        with tempfile.TemporaryDirectory() as root:
            contenders = [
                ("plain", [sys.executable, str(BENCH / "plain_keras_tuner.py"), *overrides]),
                ("ktsweep", [sys.executable, str(BENCH / "ktsweep_sweep.py"), root, *overrides, *extra]),
            ]
            if rep % 2:  # alternate who goes first
                contenders.reverse()
            for who, command in contenders:
                seconds, info = timed(command)
                (plain if who == "plain" else ours).append((seconds, info))
                print(f"  {case} rep {rep} {who}: {seconds:.1f}s best={info['best']:.4f} trials={info['trials']}", flush=True)
    p = statistics.median(s for s, _ in plain)
    k = statistics.median(s for s, _ in ours)
    return {
        "case": case,
        "plain_s": p,
        "ktsweep_s": k,
        "ratio": p / k,
        "plain_best": statistics.median(i["best"] for _, i in plain),
        "ktsweep_best": statistics.median(i["best"] for _, i in ours),
        "trials": ours[0][1]["trials"],
        "tracking_share": statistics.median(i["tracking_seconds"] / s for s, i in ours),
        "writer_share": statistics.median(i.get("tracking_write_seconds", 0.0) / s for s, i in ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", default=["digits_hyperband", "digits_random", "housing_random"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="ktsweep joins a Ray started once before the runs")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"reps={args.reps}; warm Ray: {args.warm}")
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
    print("\n| case | trials | plain keras-tuner (s) | ktsweep (s) | speed-up | best plain | best ktsweep | sweep waiting on MLflow | MLflow writer thread busy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['trials']} | {r['plain_s']:.1f} | {r['ktsweep_s']:.1f} | {r['ratio']:.2f}x "
              f"| {r['plain_best']:.4f} | {r['ktsweep_best']:.4f} | {100 * r['tracking_share']:.1f}% | {100 * r['writer_share']:.1f}% |")


if __name__ == "__main__":
    main()
