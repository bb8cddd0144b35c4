"""Several sweeps at once against one MLflow tracking server: is anything lost, duplicated or mixed up?

Starts one ``mlflow server`` (sqlite store, served artifacts, as tests/servers.py), then
``--sweeps`` ``ktsweep run`` processes of ``--trials`` trivial trials each (each with its own
local Ray, as users starting sweeps in several terminals), all registering the same model,
and prints per sweep: trial runs, finished, failed, lost, duplicated names / trial ids /
metric steps, the promotion decision and wall time; then whether the champion alias is on
the best of all. Stops every process it started, whatever happens.

    .venv/bin/python bench/server_load.py --sweeps 4 --trials 50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from concurrent_sweeps import audit, ktsweep_run, run_all  # noqa: E402
from servers import MlflowServer  # noqa: E402

MODEL = "ktsweep-server-load"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--server-workers", type=int, default=4, help="mlflow server --workers (its default: 4)")
    args = parser.parse_args()
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="ktsweep-server-load-"))  # kept: the server's and sweeps' logs
    server = MlflowServer(folder / "server", workers=args.server_workers)
    try:
        server.start(timeout=600)
        root = folder / "runs"
        load_before = os.getloadavg()
        started = time.time()
        launched = [ktsweep_run(root, server.uri, f"load-{i}", args.trials, f"tracking.registered_model={MODEL}")
                    for i in range(args.sweeps)]
        run_all(launched, args.timeout)
        wall = time.time() - started
        load_after = os.getloadavg()
        client = MlflowClient(server.uri)
        experiment_id = client.get_experiment_by_name("ktsweep").experiment_id
        audits = [audit(client, experiment_id, item.name, model=MODEL) for item in launched]
        print(f"{args.sweeps} sweeps x {args.trials} trials on one mlflow server ({args.server_workers} workers); wall {wall:.0f} s; "
              f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min)")
        print("| sweep | exit | parent runs | trial runs | finished | failed | lost | dup. names | dup. trial ids "
              "| dup. metric steps | best | version | promotion | champion tag | wall s |")
        print("|---" * 15 + "|")
        for item, found in zip(launched, audits):
            print(f"| {item.name} | {item.proc.returncode} | {found.parent_runs} | {found.trials} | {found.finished} "
                  f"| {found.failed} | {found.lost(args.trials)} | {len(found.duplicate_names)} "
                  f"| {len(found.duplicate_trial_ids)} | {len(found.duplicate_steps)} | {found.best} | {found.version} "
                  f"| {found.promotion} | {found.champion_tag or '-'} | {item.seconds:.0f} |")
        champion = client.get_model_version_by_alias(MODEL, "champion")
        best = max(audits, key=lambda found: found.best or float("-inf"))
        versions = client.search_model_versions(f"name = '{MODEL}'")
        print(f"versions registered: {len(versions)}; champion: version {champion.version} "
              f"(sweep {champion.tags.get('ktsweep.sweep')}, score {champion.tags.get('ktsweep.score')}); "
              f"best sweep: {best.name} ({best.best}); champion tags on: "
              f"{[found.name for found in audits if found.champion_tag == 'true']}")
        for item in launched:
            if item.proc.returncode:
                print(f"--- {item.name} exited {item.proc.returncode}:\n{item.output()[-3000:]}")
    finally:
        server.stop()
        print(f"logs and stores in {folder}")


if __name__ == "__main__":
    main()
