"""Fine-tuning: a study whose trials start from an earlier trial's checkpoint.

``params.init_from: {trial: N}`` is checked at submit: the trial must exist, have ended,
belong to a study of the same trainer and have kept the checkpoint asked for, and every param that
shapes the trainer's networks (``Trainer.architecture``) must match that trial's, and not be
searched. The stored definition then names the checkpoint's path in the artifact store
(whatever path was given is replaced), which each trial's worker resolves inside the store.
"""

from __future__ import annotations

from typing import Any

from gentune.service.db.models import ACTIVE_TRIAL_STATES
from gentune.service.db.repository import Repository
from gentune.service.errors import FieldError, InvalidInput, NotFound
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.views import full_config
from gentune.trainers.base import InitFrom, Trainer

FIELD = "params.init_from"


def resolve_init_from(repo: Repository, spec: StudySpec, trainer: Trainer) -> StudySpec:
    """``spec`` with its ``init_from`` pointing at the checkpoint file; raise
    ``InvalidInput`` naming the field when the trial's checkpoint cannot start this study."""
    raw = spec.params.get("init_from")
    if raw is None:
        return spec
    if not trainer.architecture:
        raise _refused(FIELD, f"trainer {trainer.name} cannot start from a checkpoint")
    init = InitFrom.model_validate(raw)  # its shape was checked with the trainer's params
    try:
        trial = repo.get_trial(init.trial)
    except NotFound:
        raise _refused(f"{FIELD}.trial", f"there is no trial {init.trial}") from None
    if trial.state in ACTIVE_TRIAL_STATES:
        raise _refused(
            f"{FIELD}.trial",
            f"trial {trial.id} is still {trial.state}: its checkpoints are replaced as it trains "
            "(and the one named would be deleted); fine-tune it once it has ended",
        )
    source = repo.get_study(trial.study_id)
    if source.trainer != trainer.name:
        raise _refused(
            f"{FIELD}.trial",
            f"trial {trial.id} trained a {source.trainer} model; this study tunes {trainer.name}",
        )
    artifact = next((a for a in repo.artifacts_of_trial(trial.id) if a.kind == init.kind), None)
    if artifact is None:
        raise _refused(f"{FIELD}.kind", f"trial {trial.id} kept no {init.kind} checkpoint")
    errors = _architecture_errors(spec, trainer, full_config(source, trial), trial.id)
    if errors:
        raise InvalidInput(errors)
    resolved = init.model_copy(update={"checkpoint": artifact.path}).model_dump()
    return spec.model_copy(update={"params": {**spec.params, "init_from": resolved}})


def _architecture_errors(
    spec: StudySpec, trainer: Trainer, source: dict[str, Any], trial_id: int
) -> list[FieldError]:
    ours = trainer.parse_params(spec.params).model_dump(mode="json")
    errors = []
    for name in trainer.architecture:
        theirs = source.get(name)
        if name in spec.search_space:
            errors.append(
                FieldError(
                    f"search_space.{name}",
                    f"shapes the network, so a study fine-tuning trial {trial_id} cannot "
                    f"search it; fix it to {theirs!r} under params",
                )
            )
        elif ours.get(name) != theirs:
            errors.append(
                FieldError(
                    f"params.{name}",
                    f"is {ours.get(name)!r} here but {theirs!r} in trial {trial_id}'s "
                    "checkpoint; fine-tuning keeps the network's shape",
                )
            )
    return errors


def _refused(field: str, message: str) -> InvalidInput:
    return InvalidInput([FieldError(field, message)])
