"""Human ratings of trials' samples: scores of 1 to 5 and picks of one trial over another."""

from __future__ import annotations

from gentune.service.db.models import Trial
from gentune.service.db.repository import Repository
from gentune.service.errors import FieldError, InvalidInput, NotFound
from gentune.service.schemas.api import RatingIn, RatingOut

ANONYMOUS = "anonymous"
"""The rater on a service without tokens."""


def rate(repo: Repository, trial_id: int, given: RatingIn, rater: str) -> RatingOut:
    """Record ``given`` for the trial; raise ``InvalidInput`` naming the field when it is not
    one score or one pick of a trial of the same study."""
    trial = repo.get_trial(trial_id)
    if (given.score is None) == (given.better_than is None):
        raise InvalidInput(
            [
                FieldError(
                    "score",
                    "give either score (1-5) or better_than (another trial's id), one of them",
                )
            ]
        )
    other = _other(repo, trial, given.better_than) if given.better_than is not None else None
    rating = repo.add_rating(trial, given.score, other, rater)
    return RatingOut.model_validate(rating, from_attributes=True)


def _other(repo: Repository, trial: Trial, other_id: int) -> Trial:
    if other_id == trial.id:
        raise InvalidInput([FieldError("better_than", "a trial is not compared with itself")])
    try:
        other = repo.get_trial(other_id)
    except NotFound:
        raise InvalidInput([FieldError("better_than", f"there is no trial {other_id}")]) from None
    if other.study_id != trial.study_id:
        raise InvalidInput(
            [
                FieldError(
                    "better_than",
                    f"trial {other_id} belongs to study {other.study_id}, trial {trial.id} to "
                    f"study {trial.study_id}: picks compare trials of one study",
                )
            ]
        )
    return other
