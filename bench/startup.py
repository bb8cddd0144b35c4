"""Start-up: wall time of commands that do not train, against ``python -c pass``.

    .venv/bin/python bench/startup.py [--reps 5]
Needs one finished sweep under ./ktsweep-runs (``make sweep``) for ``list`` and ``show``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wall(command: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def heavy_imports(argv: list[str]) -> list[str]:
    """Which heavy modules a command imports (it must not be TensorFlow or Ray Tune)."""
    probe = (
        "import sys, runpy; sys.argv = ['ktsweep', *%r]\n"
        "try:\n    runpy.run_module('ktsweep.cli.main', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY:' + ','.join(m for m in ('tensorflow', 'keras', 'ray.tune', 'torch') if m in sys.modules))" % argv
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True).stdout
    line = next(line for line in reversed(out.splitlines()) if line.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    ktsweep = str(BIN / "ktsweep")
    sweeps = subprocess.run([ktsweep, "list"], cwd=REPO, capture_output=True, text=True).stdout
    sweep = next((line.split("│")[1].strip() for line in sweeps.splitlines() if line.startswith("│")), None)
    base = wall([sys.executable, "-c", "pass"], args.reps)
    commands = {"ktsweep --help": ["--help"], "ktsweep run --help": ["run", "--help"], "ktsweep list": ["list"]}
    if sweep:
        commands["ktsweep show"] = ["show", sweep]
    print(f"python -c pass: {base:.2f}s (median of {args.reps})")
    print("\n| command | wall (s) | ratio to `python -c pass` | heavy modules imported |")
    print("|---|---|---|---|")
    for label, argv in commands.items():
        seconds = wall([ktsweep, *argv], args.reps)
        print(f"| `{label}` | {seconds:.2f} | {seconds / base:.1f}x | {', '.join(heavy_imports(argv)) or 'none'} |")


if __name__ == "__main__":
    main()
