"""Ctrl-C while an interrupted sweep closes: the second keeps the writer's queue in the journal,
the third exits at once; ``ktsweep sync`` then sends every record exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from test_cli import TINY, ktsweep, user_env

from ktsweep.tracking import journal as journal_module
from ktsweep.tracking import writer as tracking_writer
from ktsweep.tracking.journal import JOURNAL_FILE, Journal, Target, create_op, log_op, status_op

FAULTY = str(Path(__file__).with_name("faulty_ktsweep.py"))
EPOCHS = 2
TRIALS = 6


def completed_trials(oracle_dir: Path) -> list[str]:
    """Trials the oracle has completed (a trial file being written at that moment is read next time)."""
    done = []
    for trial_file in oracle_dir.glob("trial_*/trial.json"):
        try:
            trial = json.loads(trial_file.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if trial["status"] == "COMPLETED":
            done.append(trial["trial_id"])
    return done


class FakeClient:
    tracking_uri = "sqlite:///nowhere.db"


class StuckMlflow:
    """MLflow whose first call hangs until released, then fails or succeeds; records what it took."""

    def __init__(self, then_fail: bool) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.then_fail = then_fail
        self.applied: list[tuple[str, str]] = []

    def apply(self, client: Any, target: Target, op: dict[str, Any], *, dedupe: bool = False) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(30)
            if self.then_fail:
                raise ConnectionError("connection reset")
        self.applied.append((op["op"], op["trial"]))


OPS = [create_op("0", {"units": "8"}), log_op("0", metrics=[("loss", 1.0, 5, 0)]), status_op("0", "FINISHED"),
       create_op("1", {"units": "16"})]


@pytest.mark.parametrize("then_fail", [False, True], ids=["in-flight-call-succeeds", "in-flight-call-fails"])
def test_second_ctrl_c_moves_the_queue_to_the_journal_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               then_fail: bool) -> None:
    mlflow = StuckMlflow(then_fail)
    monkeypatch.setattr(tracking_writer, "apply", mlflow.apply)
    writer = tracking_writer.TrackingWriter(FakeClient(), Target("0", "parent", "s"), Journal(str(tmp_path)))
    for op in OPS:
        writer.send(op)
    assert mlflow.entered.wait(30)  # the first operation is in flight, stuck
    writer.stop_waiting.set()  # what the second Ctrl-C's handler does
    assert writer.close() is None  # returns although MLflow never answered
    kept = Journal(str(tmp_path)).pending()
    assert kept == json.loads(json.dumps(OPS))  # the one in flight first, then the queue: nothing lost
    assert writer.kept == 4 and "4 queued trial records were kept in" in writer.kept_notice()
    mlflow.release.set()  # the stuck call ends (either way): the writer takes nothing more, keeps nothing twice
    writer_thread = [t for t in threading.enumerate() if t.name == "ktsweep-mlflow-writer"]
    for thread in writer_thread:
        thread.join(30)
    assert mlflow.applied == ([] if then_fail else [("create", "0")])
    assert Journal(str(tmp_path)).pending() == kept


@pytest.mark.parametrize("third_lands", ["after-the-queue-is-kept", "while-the-queue-is-held"])
def test_a_third_ctrl_c_in_process_raises_and_the_process_lives_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   third_lands: str) -> None:
    """The Python API (a notebook's kernel): the third Ctrl-C is a KeyboardInterrupt out of closing,
    with the line the CLI prints as its note; the queue is in the journal first, and Ctrl-C is Python's again."""
    from ktsweep.search.interrupts import closing_after_ctrl_c

    mlflow = StuckMlflow(then_fail=False)
    monkeypatch.setattr(tracking_writer, "apply", mlflow.apply)
    writer = tracking_writer.TrackingWriter(FakeClient(), Target("0", "parent", "s"), Journal(str(tmp_path)))
    for op in OPS:
        writer.send(op)
    assert mlflow.entered.wait(30)  # MLflow hangs: closing would wait for it
    before = signal.getsignal(signal.SIGINT)
    reached: list[str] = []
    with pytest.raises(KeyboardInterrupt) as caught:
        with closing_after_ctrl_c(writer, sweep_dir=str(tmp_path / "sweeps" / "nb"), end_process=False):
            os.kill(os.getpid(), signal.SIGINT)  # the second
            assert writer.stop_waiting.wait(10)
            if third_lands == "while-the-queue-is-held":
                os.kill(os.getpid(), signal.SIGINT)  # nothing kept yet: it waits for the journal
                time.sleep(0.5)
                reached.append("held")
            writer.close()  # the queue goes to the journal (and, if asked, the stop follows)
            if third_lands == "after-the-queue-is-kept":
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
            reached.append("end")
    assert reached == (["held"] if third_lands == "while-the-queue-is-held" else [])
    (note,) = caught.value.__notes__
    assert note.startswith("ktsweep: stopped at once; 4 trial records not yet in MLflow are kept in ")
    assert "`ktsweep sync nb`" in note and "`ktsweep resume nb`" in note
    assert len(Journal(str(tmp_path)).pending()) == 4  # nothing lost
    assert signal.getsignal(signal.SIGINT) is before  # the caller's Ctrl-C handling is back
    mlflow.release.set()


def test_a_ctrl_c_landing_in_the_final_wait_keeps_the_queue_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep that finished and is closing, interrupted while it waits for the writer."""
    mlflow = StuckMlflow(then_fail=False)
    monkeypatch.setattr(tracking_writer, "apply", mlflow.apply)
    writer = tracking_writer.TrackingWriter(FakeClient(), Target("0", "parent", "s"), Journal(str(tmp_path)))
    for op in OPS:
        writer.send(op)
    assert mlflow.entered.wait(30)

    def interrupted(timeout: float) -> bool:
        raise KeyboardInterrupt  # the Ctrl-C, landing where the main thread waits

    monkeypatch.setattr(writer._cond, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        writer.close()
    assert len(Journal(str(tmp_path)).pending()) == 4
    assert any("sends them to MLflow" in note for note in caught.value.__notes__)
    mlflow.release.set()


def test_a_replay_sets_aside_only_what_it_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Operations appended while a replay runs (a second Ctrl-C's handover) stay in the journal."""
    journal = Journal(str(tmp_path))
    journal.extend(OPS[:2])
    sent: list[str] = []

    def apply(client: Any, target: Target, op: dict[str, Any], *, dedupe: bool = False) -> None:
        if not sent:
            journal.extend(OPS[2:])  # lands mid-replay
        sent.append(op["op"])

    monkeypatch.setattr(journal_module, "apply", apply)
    monkeypatch.setattr(Target, "load_runs", lambda self, client: None)
    assert journal.replay(FakeClient(), Target("0", "parent", "s")) == 2
    assert sent == ["create", "log"]
    assert journal.pending() == json.loads(json.dumps(OPS[2:]))
    archived = [p for p in tmp_path.iterdir() if ".synced-" in p.name]
    assert len(archived) == 1 and len(archived[0].read_text().splitlines()) == 2


def test_a_line_cut_short_is_skipped_and_the_next_one_starts_afresh(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal.append(OPS[0])
    with open(journal.path, "a") as fh:
        fh.write('{"op": "log", "tri')  # a process killed mid-write
    journal.append(OPS[1])
    assert journal.pending() == json.loads(json.dumps(OPS[:2]))


def test_a_resumed_sweep_sends_the_journal_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an earlier attempt kept goes out before anything new, as ``ktsweep sync`` would send it."""
    sent: list[tuple[str, str]] = []

    def apply(client: Any, target: Target, op: dict[str, Any], *, dedupe: bool = False) -> None:
        sent.append((op["op"], op["trial"]))

    monkeypatch.setattr(tracking_writer, "apply", apply)
    monkeypatch.setattr(journal_module, "apply", apply)
    monkeypatch.setattr(Target, "load_runs", lambda self, client: None)
    Journal(str(tmp_path)).extend(OPS[:3])
    writer = tracking_writer.TrackingWriter(FakeClient(), Target("0", "parent", "s"), Journal(str(tmp_path)))
    writer.send(OPS[3])
    assert writer.close() is None
    assert sent == [("create", "0"), ("log", "0"), ("status", "0"), ("create", "1")]
    assert Journal(str(tmp_path)).pending() == []


# -- a real sweep, real SIGINTs ------------------------------------------------


class Sweep:
    """A sweep in its own process group (as in a terminal), its stderr read line by line as it comes."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str]) -> None:
        args = ["run", *TINY, f"sweep.max_trials={TRIALS}", "executor.max_concurrent=2", f"sweep.name={name}",
                "tracking.register=false"]
        # SIGINT at its default, as from a terminal (an ignored one would be inherited across exec).
        self.proc = subprocess.Popen([sys.executable, FAULTY, *args], cwd=tmp_path, env={**user_env(), **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group

    def wait_for_line(self, start: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [line for line in self.lines if line.startswith(start)]
            if found:
                return found[0]
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            time.sleep(0.1)
        raise AssertionError(f"no line starting {start!r} within {timeout} s:\n" + "\n".join(self.lines[-40:]))

    def wait_for_trials(self, oracle_dir: Path, count: int, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while len(completed_trials(oracle_dir)) < count:
            assert self.proc.poll() is None and time.time() < deadline, "\n".join(self.lines[-40:])
            time.sleep(0.2)

    def exit_code(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def sweep_process(tmp_path: Path) -> Iterator[Any]:
    started: list[Sweep] = []

    def start(name: str, env: dict[str, str]) -> Sweep:
        started.append(Sweep(tmp_path, name, env))
        return started[-1]

    yield start
    for sweep in started:
        sweep.stop()


def interrupt_while_the_writer_is_stuck(tmp_path: Path, sweep_process: Any, name: str, stall: str = "") -> Sweep:
    """Run until MLflow stopped taking the writer's records and trials finished since, then Ctrl-C twice.
    ``stall``: a file that, created before the first Ctrl-C, makes closing the sweep hang on MLflow too."""
    sweep = sweep_process(name, {"KTSWEEP_FAULT_WRITER_STALLS_AFTER": "6", "KTSWEEP_FAULT_STALL_FILE": stall})
    sweep.wait_for_trials(tmp_path / "ktsweep-runs" / "sweeps" / name / "oracle", 3)
    if stall:
        Path(stall).touch()
    sweep.ctrl_c()
    queued = sweep.wait_for_line("ktsweep: interrupted: sending ")
    assert int(queued.split()[3]) >= 2, queued  # the first Ctrl-C waits for a queue the writer cannot send
    sweep.ctrl_c()
    sweep.wait_for_line("ktsweep: interrupted again: ")
    return sweep


def check_every_trial_once(tmp_path: Path, name: str, trial_ids: list[str]) -> Any:
    """Each trial has one run, its params, and each metric point exactly once."""
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    runs = find_runs(client, experiment, sweep=name, kind="trial")
    by_trial: dict[str, list[Any]] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags["ktsweep.trial_id"], []).append(run)
    for trial_id in trial_ids:
        assert len(by_trial.get(trial_id, [])) == 1, (trial_id, sorted(by_trial))
        run = by_trial[trial_id][0]
        assert run.info.status == "FINISHED" and run.data.tags["ktsweep.status"] == "COMPLETED"
        assert {"n_hidden", "n_neurons", "learning_rate", "optimizer"} <= set(run.data.params)
        for key in ("val_accuracy", "loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(EPOCHS)), (trial_id, key, steps)
        assert len(client.get_metric_history(run.info.run_id, "objective")) == 1
    return find_runs(client, experiment, sweep=name, kind="sweep")[0]


@pytest.mark.slow
def test_two_ctrl_c_keep_the_queue_then_sync_sends_it_once(tmp_path: Path, sweep_process: Any) -> None:
    name = "twice"
    sweep = interrupt_while_the_writer_is_stuck(tmp_path, sweep_process, name)
    assert sweep.exit_code() == 130, "\n".join(sweep.lines[-40:])
    journal = tmp_path / "ktsweep-runs" / "sweeps" / name / JOURNAL_FILE
    kept = [line for line in sweep.lines if "queued trial records were kept in" in line]
    assert kept and str(journal) in kept[0] and f"`ktsweep sync {name}`" in kept[0]
    assert sweep.lines[-1].startswith("ktsweep: interrupted; `ktsweep resume")
    assert "Traceback" not in "\n".join(sweep.lines)
    assert len(Journal(str(journal.parent)).pending()) == int(kept[0].split()[1])

    done = completed_trials(tmp_path / "ktsweep-runs" / "sweeps" / name / "oracle")
    synced = ktsweep("sync", name, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "sent " in synced.stdout and "closing the sweep" not in synced.stdout  # closed as killed already
    assert not journal.exists()
    parent = check_every_trial_once(tmp_path, name, done)
    assert parent.info.status == "KILLED" and parent.data.tags["ktsweep.status"] == "killed"


@pytest.mark.slow
def test_a_third_ctrl_c_exits_at_once_then_sync_finishes_the_sweep(tmp_path: Path, sweep_process: Any) -> None:
    name = "thrice"
    stall = tmp_path / "closing-stalls"  # closing the sweep will hang on MLflow too: only a third Ctrl-C gets out
    sweep = interrupt_while_the_writer_is_stuck(tmp_path, sweep_process, name, str(stall))
    sweep.ctrl_c()
    assert sweep.exit_code() == 130, "\n".join(sweep.lines[-40:])
    journal = tmp_path / "ktsweep-runs" / "sweeps" / name / JOURNAL_FILE
    last = sweep.lines[-1]
    assert last.startswith("ktsweep: stopped at once; ") and str(journal) in last and f"ktsweep sync {name}" in last
    assert f"ktsweep resume {name}" in last and "Traceback" not in "\n".join(sweep.lines)
    assert Journal(str(journal.parent)).pending()

    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    parent = find_runs(client, client.get_experiment_by_name("ktsweep").experiment_id, sweep=name, kind="sweep")[0]
    assert parent.data.tags["ktsweep.status"] == "running"  # it exited at once: closing never happened

    stall.unlink()
    synced = ktsweep("sync", name, cwd=tmp_path)  # sends the records, then resumes the open sweep to its end
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "sent " in synced.stdout and "closing the sweep" in synced.stdout
    done = completed_trials(tmp_path / "ktsweep-runs" / "sweeps" / name / "oracle")
    assert len(done) == TRIALS
    parent = check_every_trial_once(tmp_path, name, done)
    assert parent.info.status == "FINISHED"
