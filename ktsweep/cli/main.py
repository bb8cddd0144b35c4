"""``ktsweep``: the command line. Only ``run``/``resume`` import TensorFlow and Ray.

Subcommands parse their own flags; ``run`` hands the rest to Hydra after a
pre-flight check of every job's config, so a typo costs a second, not a sweep.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

# Quiet TensorFlow's C++ start-up chatter; must be set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from ktsweep.cli.console import DEBUG_ENV, fail
from ktsweep.core.errors import KtsweepError

DEFAULT_ROOT = "ktsweep-runs"
HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--resolve", "--package", "-p")


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=DEFAULT_ROOT, help="sweep root (default: %(default)s)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow URI (default: sqlite file under --root)")
    parser.add_argument("--experiment", default="ktsweep", help="MLflow experiment (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktsweep",
        description="Hyperparameter sweeps for Keras: Keras Tuner decides, Ray runs, MLflow remembers.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="launch a sweep: ktsweep run [hydra overrides] [--multirun]", add_help=False)
    resume = commands.add_parser("resume", help="finish an interrupted sweep")
    resume.add_argument("sweep")
    resume.add_argument("--root", default=DEFAULT_ROOT)
    sync = commands.add_parser("sync", help="after an MLflow outage: send the sweep's kept records, then close it")
    sync.add_argument("sweep")
    sync.add_argument("--root", default=DEFAULT_ROOT)
    submit = commands.add_parser("submit", help="run a sweep as a Ray job on a cluster; prints the job id at once")
    submit.add_argument("overrides", nargs="*", help="hydra overrides, as for `ktsweep run`")
    submit.add_argument("--working-dir", default=None, help="a folder to upload with the job (your own code)")
    for name, text in (("status", "state of a submitted sweep"), ("logs", "output of a submitted sweep"),
                       ("stop", "stop a submitted sweep")):
        job = commands.add_parser(name, help=text)
        job.add_argument("job_id")
        if name == "logs":
            job.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    for name in ("submit", "status", "logs", "stop"):
        commands.choices[name].add_argument(
            "--address", default=None, help="Ray job server, http://HOST:8265 (default: $RAY_API_SERVER_ADDRESS)"
        )
    listing = commands.add_parser("list", help="sweeps with status and best score")
    _store_options(listing)
    show = commands.add_parser("show", help="leaderboard of a sweep's trials")
    show.add_argument("sweep")
    show.add_argument("--top", type=int, default=None)
    show.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _store_options(show)
    pull = commands.add_parser("pull", help="best model of a sweep, or NAME@ALIAS / NAME/VERSION, to --out, verified")
    pull.add_argument("ref", help="SWEEP | MODEL@ALIAS | MODEL/VERSION")
    pull.add_argument("--out", required=True, help="folder to write model.keras and model.json into")
    pull.add_argument("--format", choices=("keras", "saved_model"), default="keras")
    pull.add_argument("--force", action="store_true", help="replace a non-empty --out")
    _store_options(pull)
    report = commands.add_parser("report", help="the sweep's HTML report (self-contained, offline)")
    report.add_argument("sweep")
    report.add_argument("--out", default=None, help="file to write (default: SWEEP.html)")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    _store_options(report)
    ui = commands.add_parser("ui", help="MLflow UI on the sweeps' runs, or one sweep's run (binds 127.0.0.1 unless --host)")
    ui.add_argument("sweep", nargs="?", default=None, help="open this sweep's run (default: the runs table)")
    ui.add_argument("--open", action="store_true", help="open the address in a browser")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    _store_options(ui)
    return parser


def main(argv: Optional[list[str]] = None) -> None:
    """``argv=None``: this process is the command, and may leave at once when done (``warm_workers.leave``)."""
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        if argv is None:
            _leave(exc.code)
        raise
    if argv is None:
        _leave(0)


def _leave(code: object) -> None:
    if "ray" in sys.modules:  # only `run`, `resume` and `sync` start Ray
        from ktsweep.execution.warm_workers import leave

        leave(code)


def _main(argv: list[str]) -> None:
    if "--debug" in argv[:1]:
        os.environ[DEBUG_ENV] = "1"
        argv = argv[1:]
    if not os.environ.get(DEBUG_ENV):
        import warnings

        warnings.simplefilter("ignore")  # libraries' warnings would bury the one line that matters
    try:
        if argv and argv[0] == "run":
            run(argv[1:])
            return
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return
        {"resume": resume, "sync": sync, "submit": submit, "status": job_status, "logs": job_logs, "stop": job_stop,
         "list": list_sweeps, "show": show, "pull": pull, "report": report, "ui": ui}[args.command](args)
    except KtsweepError as exc:
        fail(exc)
    except KeyboardInterrupt:
        print("ktsweep: interrupted; `ktsweep resume SWEEP` continues it", file=sys.stderr)
        raise SystemExit(130)


def run(args: list[str]) -> None:
    """Pre-flight every job's config, then let Hydra run (multirun, --cfg and --help included)."""
    from ktsweep.conf.compose import check_overrides

    if "--debug" in args:
        os.environ[DEBUG_ENV] = "1"
        args = [a for a in args if a != "--debug"]
    informational = any(a in HYDRA_INFO_FLAGS or a.startswith("--cfg=") for a in args)
    multirun = "--multirun" in args or "-m" in args
    if not informational:
        overrides = [a for a in _without_flag_values(args) if not a.startswith("-")]
        from ktsweep.execution.cluster import start_ray_early

        check_overrides([*overrides, *_search_path(args)], multirun=multirun, before_imports=start_ray_early)
    from ktsweep.cli import run_app as app

    sys.argv = ["ktsweep run", *args]
    app.main()


CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
VALUED_FLAGS = (*CONFIG_DIR_FLAGS, "--config-path", "-cp", "--config-name", "-cn", "--experimental-rerun")


def _without_flag_values(args: list[str]) -> list[str]:
    """``args`` less the values of Hydra's flags that take one (``--config-dir ./conf``)."""
    return [a for i, a in enumerate(args) if not (i and args[i - 1] in VALUED_FLAGS)]


def _search_path(args: list[str]) -> list[str]:
    """A user's ``--config-dir``, for the pre-flight compose: their groups beside ktsweep's."""
    dirs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in CONFIG_DIR_FLAGS]
    dirs += [a.split("=", 1)[1] for a in args if a.startswith(tuple(f"{flag}=" for flag in CONFIG_DIR_FLAGS))]
    for folder in dirs:
        if not os.path.isdir(folder):
            from ktsweep.core.errors import UsageError

            raise UsageError(f"--config-dir {folder} is not a folder; point it at your config folder (e.g. ./conf)")
    return [f"hydra.searchpath=[{','.join('file://' + os.path.abspath(d) for d in dirs)}]"] if dirs else []


def resume(args: argparse.Namespace) -> None:
    from ktsweep.core.sweep_folder import load_overrides

    run(load_overrides(args.root, args.sweep))


def sync(args: argparse.Namespace) -> None:
    """Replay the sweep's journal into MLflow; a sweep left open by the outage is then closed by resuming it."""
    from ktsweep.tracking.sync import sync_journal

    synced = sync_journal(args.root, args.sweep)
    print(synced.summary(), flush=True)
    if synced.needs_close:
        from ktsweep.core.sweep_folder import load_overrides

        run(load_overrides(args.root, args.sweep))


def submit(args: argparse.Namespace) -> None:
    from ktsweep.execution.jobs import submit as submit_job

    print(submit_job(args.overrides, address=args.address, working_dir=args.working_dir).summary())


def job_status(args: argparse.Namespace) -> None:
    from ktsweep.execution.jobs import status_line

    print(status_line(args.address, args.job_id))


def job_logs(args: argparse.Namespace) -> None:
    from ktsweep.execution.jobs import logs

    for chunk in logs(args.address, args.job_id, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def job_stop(args: argparse.Namespace) -> None:
    from ktsweep.execution.jobs import stop

    print(stop(args.address, args.job_id))


def _store_uri(args: argparse.Namespace) -> str:
    from ktsweep.tracking.records import local_uri

    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_uri(args.root)


def _open(args: argparse.Namespace) -> tuple[object, str]:
    from ktsweep.tracking.records import connect

    uri = _store_uri(args)
    if uri.startswith("sqlite:") and not os.path.exists(uri.split("sqlite:///", 1)[-1]):
        from ktsweep.core.errors import UsageError

        raise UsageError(f"no sweeps yet: {uri} does not exist; run `ktsweep run` first (or pass --root)")
    return connect(uri, args.experiment, root=args.root)


def _open_for_reading(args: argparse.Namespace) -> tuple[object, str]:
    """For list/show/ui: read a local sqlite store directly (no MLflow import, ~2 s saved), else MLflow."""
    uri = _store_uri(args)
    path = uri.split("sqlite:///", 1)[-1] if uri.startswith("sqlite:///") else None
    if path and os.path.exists(path):
        import sqlite3

        from ktsweep.tracking.sqlite_runs import SqliteRuns

        try:
            reader = SqliteRuns(path)
            experiment_id = reader.experiment_id(args.experiment)
            if experiment_id is not None:
                return reader, experiment_id
        except sqlite3.Error:
            pass  # a schema this reader does not know: MLflow's client reads it
    return _open(args)


def list_sweeps(args: argparse.Namespace) -> None:
    from ktsweep.cli.console import console_for_tables
    from ktsweep.dashboards.leaderboard import rich_table, sweeps_frame

    client, experiment_id = _open_for_reading(args)
    frame = sweeps_frame(client, experiment_id)
    console_for_tables().print(rich_table(frame, title=f"{len(frame)} sweeps"))


def show(args: argparse.Namespace) -> None:
    from ktsweep.dashboards.leaderboard import rich_table, trials_frame

    client, experiment_id = _open_for_reading(args)
    frame, objective, direction = trials_frame(client, experiment_id, args.sweep)
    if args.top:
        frame = frame.head(args.top)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(frame.to_json(orient="records", indent=2) + "\n")
    else:
        from ktsweep.cli.console import console_for_tables
        from ktsweep.dashboards.leaderboard import backend_of, final_model, sweep_run

        console = console_for_tables()
        run = sweep_run(client, experiment_id, args.sweep)
        console.print(rich_table(frame, title=f"sweep {args.sweep} ({objective}, {direction}; Keras on {backend_of(run)})"))
        published = final_model(run)
        if published:
            console.print(f"final model: {published}")


def pull(args: argparse.Namespace) -> None:
    from ktsweep.registry.pull import pull as pull_model

    client, experiment_id = _open(args)
    print(pull_model(client, experiment_id, args.ref, out=args.out, fmt=args.format, force=args.force).summary())


def report(args: argparse.Namespace) -> None:
    from ktsweep.dashboards.report import build_report

    client, experiment_id = _open(args)
    out = os.path.abspath(args.out or f"{args.sweep}.html")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(build_report(client, experiment_id, args.sweep))
    print(f"report: {out}")
    if args.open:
        import webbrowser

        webbrowser.open(f"file://{out}")


def ui(args: argparse.Namespace) -> None:
    """Serve the store with MLflow's UI and print the page once it answers; a tracking server's URI: just the page."""
    from ktsweep.dashboards.mlflow_ui import local_host, page_url, serve, show_page

    uri = _store_uri(args)
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        from ktsweep.tracking.records import connect  # no sweeps yet: a new store, whose runs table fills as they start

        client, experiment_id = connect(uri, args.experiment, root=args.root)
    else:
        client, experiment_id = _open_for_reading(args)
    run_id = None
    if args.sweep:
        from ktsweep.dashboards.leaderboard import sweep_run

        run_id = sweep_run(client, experiment_id, args.sweep).info.run_id
    if uri.startswith(("http://", "https://")):  # the server already serves the UI
        show_page(page_url(uri, experiment_id, run_id), args.open)
        return
    folder = os.path.dirname(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else args.root
    page = page_url(f"http://{local_host(args.host)}:{args.port}", experiment_id, run_id)
    serve(uri, host=args.host, port=args.port, page=page, log_path=os.path.join(folder or ".", "mlflow-ui.log"),
          open_browser=args.open)


if __name__ == "__main__":
    main()
