"""A sweep's own local Ray: trial actors land in Ray's prestarted, TensorFlow-preloaded workers
(``execution/warm_workers.py``), and the command leaves nothing running behind it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import user_env

TESTS = Path(__file__).resolve().parent


@pytest.mark.backend
@pytest.mark.slow
def test_trials_run_in_rays_prestarted_workers(tmp_path: Path) -> None:
    """Without ``use_prestarted_workers`` every trial actor gets a new process that imports TensorFlow
    after the sweep has started (checked by hand: pids outside the prestarted set)."""
    done = subprocess.run(
        [sys.executable, str(TESTS / "warm_workers_probe.py"), str(tmp_path / "runs"),
         "sweep.max_trials=4", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1"],
        cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["owned"] and found["trials"] == 4
    assert len(found["prestarted"]) == 2  # one per CPU of the local Ray
    assert found["trial_pids"] and set(found["trial_pids"]) <= set(found["prestarted"])
    # execution/preload.py, before any work: Keras, Keras Tuner, and TensorFlow only when it is the backend
    assert found["preloaded"] == ["keras", "keras_tuner"] + (["tensorflow"] if found["backend"] == "tensorflow" else [])
    assert found["data_task_preloaded"] == []  # the probe's and final model's worker imports what its task needs


def test_use_prestarted_workers_only_touches_a_ray_this_process_started() -> None:
    """The patch is inert for a Ray someone else started (a cluster, a test session, a notebook)."""
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache

    from ktsweep.execution import warm_workers

    warm_workers.use_prestarted_workers()
    assert getattr(_ActorClassCache.get, "ktsweep_patched", False)
    assert not warm_workers._State.owned

    class Trainable:
        pass

    remote = _ActorClassCache().get(Trainable)  # Tune's own path: its runtime_env is kept
    assert remote._default_options.get("runtime_env", {}).get("env_vars", {}).get("PL_DISABLE_FORK") == "1"
    assert isinstance(remote, ray.actor.ActorClass)


LEAVING = """
import concurrent.futures, sys, threading, time
from pathlib import Path
from ktsweep.execution import warm_workers

# What MLflow's local artifact repository leaves at exit: an idle worker of a thread pool still
# referenced, which only Python's exit hook for thread pools stops (the CI hang of 2026-11-26).
pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="idle-pool")
pool.submit(lambda: None).result()
# A thread still doing work that must be done before the process ends.
threading.Thread(target=lambda: (time.sleep(1), Path(sys.argv[1]).write_text("done"))).start()
warm_workers.start_early(lambda: None)
warm_workers._State.owned = True  # as when the start above had started a local Ray
print("leaving", flush=True)
warm_workers.leave(3)
"""


def test_leave_stops_idle_thread_pools_and_waits_for_working_threads(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", LEAVING, str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    assert done.stdout == "leaving\n"
    assert (tmp_path / "work").read_text() == "done"


def test_fork_handlers_are_registered_before_ray_forks_from_its_thread() -> None:
    """h5py's at-fork handlers (imported by Keras) registered while Ray's start thread forks print
    "Exception ignored ... cannot release un-acquired lock" into the command's output (a CI run failed
    on it). ``start_early`` imports h5py before that thread starts."""
    probe = (
        "import sys\n"
        "from ktsweep.execution import warm_workers\n"
        "seen = []\n"
        "warm_workers.start_early(lambda: seen.append('h5py' in sys.modules))\n"
        "warm_workers.wait_started()\n"
        "print(seen)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=user_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[True]"
