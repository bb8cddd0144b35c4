"""A registered version and the ``champion`` alias: registered once, promoted by the configured policy.

Publishing is idempotent: the version is found by the sweep's run id and the
digest of the bundle's model before one is created, so a publication cut short
by an outage is finished by ``ktsweep sync`` instead of registered twice. The
``champion`` alias moves in one place only (``move_champion``), as one critical
section per registered model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ktsweep.registry.champion import mark_champion
from ktsweep.tracking.records import store_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
PROMOTE_POLICIES = ("always", "if_better", "never")
TAG_DIGEST = "ktsweep.bundle_digest"  # on a version: sha256 of the bundle's model.keras
TAG_DECISION = "ktsweep.promotion"  # on a version: pending (from its creation), then promoted | kept
PENDING = "pending"
# Promotion on a server: how often to look again while an older version decides, or after
# another writer moved the alias; a version registered more than STALE_MS before ours and
# still pending belongs to a sweep that died or lost MLflow (its `ktsweep sync` decides it).
TRIES = 120
WAIT_SECONDS = 0.25
STALE_MS = 60_000


@dataclass(frozen=True)
class Publication:
    """What publishing decided: the registered version and whether it became the champion."""

    name: Optional[str]
    version: Optional[str]
    promoted: bool
    reason: str


def champion_decision(
    policy: str, *, candidate: float, current: Optional[dict[str, str]], objective: str, direction: str, data: str
) -> tuple[bool, str]:
    """Should the candidate take the ``champion`` alias? (``current``: the champion's tags, if any.)"""
    if policy == "never":
        return False, "promotion disabled (registry promote=never)"
    if policy == "always" or current is None:
        return True, "no champion yet" if current is None else "promote=always"
    if current.get("ktsweep.objective") != objective or current.get("ktsweep.data") != data:
        return False, (
            f"champion was judged on {current.get('ktsweep.objective')} / {current.get('ktsweep.data')}, "
            f"not {objective} / {data}: not comparable, kept"
        )
    best = float(current.get("ktsweep.score", "nan"))
    better = math.isnan(best) or (candidate > best if direction == "max" else candidate < best)
    verdict = "better" if better else "not better"
    return better, f"candidate {objective}={candidate:.6g} is {verdict} than champion {best:.6g}"


def version_tags(card: dict[str, Any], digest: str, promote: str) -> dict[str, str]:
    """A version's tags, set with its creation (one write): lineage, what it is judged on, its digest,
    and ``pending`` until its promotion is decided."""
    lineage = card["lineage"]
    return {
        "ktsweep.sweep": lineage["sweep"],
        "ktsweep.trial_id": lineage["trial_id"],
        "ktsweep.parent_run_id": lineage["parent_run_id"],
        "ktsweep.objective": card["objective"]["name"],
        "ktsweep.direction": card["objective"]["direction"],
        "ktsweep.score": repr(card["objective"]["value"]),
        "ktsweep.data": card["data"]["name"],
        TAG_DIGEST: digest,
        TAG_DECISION: "kept" if promote == "never" else PENDING,
    }


def find_version(client: "MlflowClient", name: str, *, run_id: str, digest: str) -> Optional["ModelVersion"]:
    """The version this run already registered for this bundle (a publication cut short after registering)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}' and tags.`{TAG_DIGEST}` = '{digest}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(
    client: "MlflowClient", name: str, *, source: str, run_id: str, tags: dict[str, str], model_id: Optional[str] = None
) -> "ModelVersion":
    """Create the version with its tags in one call (creating the registered model if needed)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    return client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    before: Optional["ModelVersion"]  # the champion the decision was made against


def promote_version(client: "MlflowClient", name: str, version: "ModelVersion", *, policy: str, run_id: str) -> Publication:
    """Apply the promotion policy to a registered version; log the decision and both scores on ``run_id``."""
    tags = version.tags
    score = float(tags["ktsweep.score"])

    def decide(current: Optional["ModelVersion"]) -> tuple[bool, str]:
        promoted, reason = champion_decision(
            policy, candidate=score, current=dict(current.tags) if current else None,
            objective=tags["ktsweep.objective"], direction=tags["ktsweep.direction"], data=tags["ktsweep.data"],
        )
        return promoted, reason if current is None else f"{reason} (version {current.version})"

    if policy == "never":
        decision = Decision(*decide(None), before=champion_version(client, name))
    else:
        decision = move_champion(client, name, version, decide)
    before = decision.before
    client.set_tag(run_id, "ktsweep.promotion", "promoted" if decision.promoted else "kept")
    client.set_tag(run_id, "ktsweep.promotion_reason", decision.reason)
    client.set_tag(run_id, "ktsweep.champion_before", str(before.version) if before else "none")
    scores = {"candidate_score": score}
    if before is not None and before.tags.get("ktsweep.score"):
        scores["champion_score_before"] = float(before.tags["ktsweep.score"])
    log_once(client, run_id, scores)
    return Publication(name, str(version.version), decision.promoted, decision.reason)


def log_once(client: "MlflowClient", run_id: str, metrics: dict[str, float]) -> None:
    """Log metrics the run does not have yet: a finished publication's retry adds no second point."""
    have = client.get_run(run_id).data.metrics
    for key, value in metrics.items():
        if key not in have:
            client.log_metric(run_id, key, value)


def move_champion(
    client: "MlflowClient", name: str, version: "ModelVersion",
    decide: Callable[[Optional["ModelVersion"]], tuple[bool, str]],
) -> Decision:
    """The one place the ``champion`` alias moves: read the champion, decide, move, as one critical
    section per registered model, so two sweeps finishing at once cannot both act on the old champion.

    A sqlite store is serialised by its file lock (the one that guards its set-up). A server has
    no lock to take: versions decide in registration order (one waits while an older one is still
    ``pending``), and the move is a compare-and-set: the alias is read again after writing, and if
    another writer moved it meanwhile, the decision is made again. Bounded: after ``TRIES`` the
    champion is left as it is, and the reason says why.
    """
    uri = client.tracking_uri
    serialised = uri.startswith("sqlite:///")
    why = ""
    with store_lock(uri):
        for _ in range(TRIES):
            ahead = None if serialised else deciding_before(client, name, version)
            if ahead is not None:
                why = f"version {ahead.version} (sweep {ahead.tags.get('ktsweep.sweep')}) is still deciding"
                time.sleep(WAIT_SECONDS)
                continue
            current = champion_version(client, name)
            if current is not None and str(current.version) == str(version.version):
                mark_champion(client, name, str(version.version))  # a publication finished by sync
                return decided(client, name, version, Decision(True, "already the champion", current))
            promoted, reason = decide(current)
            if promoted:
                client.set_registered_model_alias(name, CHAMPION, version.version)
                moved = None if serialised else champion_version(client, name)
                if moved is not None and str(moved.version) != str(version.version):
                    why = f"another writer moved the alias to version {moved.version} meanwhile"
                    continue
                mark_champion(client, name, str(version.version))  # the UI's champion tag moves with the alias
            return decided(client, name, version, Decision(promoted, reason, current))
    reason = f"gave up after {TRIES} tries ({why}); champion left as it is"
    return decided(client, name, version, Decision(False, reason, None))


def decided(client: "MlflowClient", name: str, version: "ModelVersion", decision: Decision) -> Decision:
    """Mark the version decided: later versions stop waiting for it."""
    client.set_model_version_tag(name, version.version, TAG_DECISION, "promoted" if decision.promoted else "kept")
    return decision


def deciding_before(client: "MlflowClient", name: str, version: "ModelVersion") -> Optional["ModelVersion"]:
    """An older version of the model still waiting for its promotion decision, registered recently enough
    (``STALE_MS``) that its sweep is presumably deciding right now."""
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{TAG_DECISION}` = '{PENDING}' and version_number < {int(version.version)}"
    )
    recent = [v for v in found if version.creation_timestamp - v.creation_timestamp < STALE_MS]
    return max(recent, key=lambda v: int(v.version)) if recent else None


def champion_version(client: "MlflowClient", name: str) -> Optional["ModelVersion"]:
    """The current champion version, or None when there is none (any other failure raises:
    an unreachable server must not read as "no champion yet")."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
