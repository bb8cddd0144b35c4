"""Sweeps that finish at the same moment: the ``champion`` alias always ends on the best candidate.

Four processes (four sweeps' publications) register candidates with known scores into one
store at once, released together by a barrier, five rounds in a row: on a sqlite store (the
file lock) and on a real ``mlflow server`` (versions take turns, compare-and-set).
"""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any, Iterator

import pytest
from servers import mlflow_server

ROUNDS = 5
OLD_CHAMPION = 0.7  # each round's registered model starts with a champion of this score
SCORES = (0.62, 0.91, 0.35, 0.78)  # the four candidates; each round hands them out differently
EXPERIMENT = "promotion-race"


def scores_for(round_: int) -> list[float]:
    return [SCORES[(i + round_) % len(SCORES)] for i in range(len(SCORES))]


def card(sweep: str, run_id: str, score: float) -> dict[str, Any]:
    """What publishing knows of a candidate (the parts its version is tagged with)."""
    return {"lineage": {"sweep": sweep, "trial_id": "0", "parent_run_id": run_id},
            "objective": {"name": "val_accuracy", "direction": "max", "value": score}, "data": {"name": "digits"}}


def register(client: Any, experiment_id: str, name: str, sweep: str, score: float) -> tuple[str, Any]:
    """Register a candidate as a sweep does (a run, a version tagged ``pending``); returns (run id, version)."""
    from ktsweep.registry.promotion import register_version, version_tags

    run = client.create_run(experiment_id, run_name=sweep)
    version = register_version(client, name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                               tags=version_tags(card(sweep, run.info.run_id, score), f"digest-{sweep}", "if_better"))
    return run.info.run_id, version


def publish(client: Any, experiment_id: str, name: str, sweep: str, score: float) -> tuple[str, Any]:
    """Register a candidate and apply ``if_better``; returns (run id, publication)."""
    from ktsweep.registry.promotion import promote_version

    run_id, version = register(client, experiment_id, name, sweep, score)
    publication = promote_version(client, name, version, policy="if_better", run_id=run_id)
    client.set_terminated(run_id)
    return run_id, publication


def contender(uri: str, experiment_id: str, index: int, barrier: Any, results: Any) -> None:
    """One process: in each round, wait for the others, then publish its candidate."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        for round_ in range(ROUNDS):
            barrier.wait(timeout=120)
            score = scores_for(round_)[index]
            run_id, publication = publish(client, experiment_id, f"race-{round_}", f"sweep-{index}", score)
            results.put((round_, index, score, run_id, publication.version, publication.promoted, publication.reason))
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        barrier.abort()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``mlflow server`` for the module's tests (starting one takes a while on a busy machine)."""
    with mlflow_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def race(uri: str) -> list[tuple]:
    """Set up each round's registered model with its old champion, then run the four contenders."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    for round_ in range(ROUNDS):
        _, first = publish(client, experiment_id, f"race-{round_}", "old-champion", OLD_CHAMPION)
        assert first.promoted and first.reason == "no champion yet"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(SCORES)), context.Queue()
    procs = [context.Process(target=contender, args=(uri, experiment_id, i, barrier, results)) for i in range(len(SCORES))]
    for proc in procs:
        proc.start()
    collected = [results.get(timeout=300) for _ in range(ROUNDS * len(SCORES))]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    errors = [item[2] for item in collected if item[0] == "error"]
    assert not errors, errors[0]  # no exception escapes
    return collected


def check_rounds(uri: str, collected: list[tuple]) -> None:
    from mlflow import MlflowClient

    from ktsweep.registry.promotion import TAG_DECISION

    client = MlflowClient(uri)
    for round_ in range(ROUNDS):
        name = f"race-{round_}"
        mine = [item for item in collected if item[0] == round_]
        assert len(mine) == len(SCORES)
        best = max(mine, key=lambda item: item[2])
        champion = client.get_model_version_by_alias(name, "champion")
        assert str(champion.version) == best[4], (round_, champion.tags["ktsweep.score"], mine)  # the alias ends on the best
        assert best[5], best  # ... and its sweep was told it was promoted
        for _, index, score, run_id, version, promoted, reason in mine:
            run = client.get_run(run_id)
            # each decision is logged, with what it saw: a kept candidate saw a champion at least as good
            assert run.data.tags["ktsweep.promotion"] == ("promoted" if promoted else "kept")
            assert run.data.tags["ktsweep.promotion_reason"] == reason
            seen = run.data.metrics["champion_score_before"]
            assert run.data.metrics["candidate_score"] == pytest.approx(score)
            assert (score > seen) == promoted, (round_, index, score, seen, reason)
            assert client.get_model_version(name, version).tags[TAG_DECISION] == ("promoted" if promoted else "kept")


@pytest.mark.slow
def test_four_sweeps_at_once_on_sqlite(tmp_path: Path) -> None:
    from ktsweep.tracking.records import local_uri

    uri = local_uri(str(tmp_path))
    check_rounds(uri, race(uri))


@pytest.mark.slow
def test_four_sweeps_at_once_on_a_server(server: Any) -> None:
    check_rounds(server.uri, race(server.uri))


@pytest.mark.slow
def test_a_version_stuck_deciding_makes_the_next_give_up_in_one_line(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a server, a version whose sweep died while deciding holds the next ones back, within bounds."""
    from mlflow import MlflowClient

    from ktsweep.registry import promotion as registry

    monkeypatch.setattr(registry, "TRIES", 3)
    monkeypatch.setattr(registry, "WAIT_SECONDS", 0.05)
    client = MlflowClient(server.uri)
    experiment_id = client.create_experiment("promotion-stuck")
    publish(client, experiment_id, "stuck", "old-champion", OLD_CHAMPION)
    _, stuck = register(client, experiment_id, "stuck", "died", 0.8)  # its sweep never decides
    _, publication = publish(client, experiment_id, "stuck", "next", 0.95)
    assert not publication.promoted
    assert publication.reason == (f"gave up after 3 tries (version {stuck.version} (sweep died) is still deciding); "
                                  "champion left as it is")
    assert client.get_model_version_by_alias("stuck", "champion").tags["ktsweep.sweep"] == "old-champion"
