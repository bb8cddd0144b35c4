"""The champion, visible in the MLflow UI: a tag on the winning sweep's run, a description on the model.

Called where the ``champion`` alias is set (``promotion.move_champion``), and only there, so the tag
moves exactly when the alias moves. The registered model remembers which run carries the
tag (``ktsweep.champion_run``), so the previous champion's run loses it without a search,
whatever experiment it is in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ktsweep.tracking.records import TAG_CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_CHAMPION_RUN = "ktsweep.champion_run"  # on the registered model: the sweep run that carries TAG_CHAMPION


def mark_champion(client: "MlflowClient", model: str, version: str) -> None:
    """``version`` of ``model`` has just taken the alias: tag its sweep's run, untag the previous one."""
    from mlflow.exceptions import MlflowException

    tags = client.get_model_version(model, version).tags
    run_id = tags.get("ktsweep.parent_run_id")
    previous = client.get_registered_model(model).tags.get(TAG_CHAMPION_RUN)
    if previous and previous != run_id:
        try:
            client.delete_tag(previous, TAG_CHAMPION)
        except MlflowException:  # that run was deleted meanwhile: nothing left to untag
            pass
    if run_id:
        client.set_tag(run_id, TAG_CHAMPION, "true")
        client.set_registered_model_tag(model, TAG_CHAMPION_RUN, run_id)
    client.update_registered_model(model, description=champion_description(tags, version))


def champion_description(tags: dict[str, str], version: str) -> str:
    """Markdown for the registered model's page: which sweep and trial won, judged how."""
    score = tags.get("ktsweep.score", "?")
    try:
        score = f"{float(score):.6g}"
    except ValueError:
        pass
    return (
        f"Champion: version {version}, from ktsweep sweep `{tags.get('ktsweep.sweep', '?')}` "
        f"(trial {tags.get('ktsweep.trial_id', '?')}), `{tags.get('ktsweep.objective', '?')}` = {score} "
        f"({tags.get('ktsweep.direction', '?')}) on data `{tags.get('ktsweep.data', '?')}`."
    )
