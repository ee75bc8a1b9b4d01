"""/trials: one trial with its full metric history, and its checkpoints."""

from __future__ import annotations

from pathlib import Path as Path_
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import FileResponse

from gentune.service.api.deps import ArtifactStoreDep, BaseUrlDep, RepositoryDep, WriterDep
from gentune.service.artifacts import media_type
from gentune.service.errors import NotFound
from gentune.service.schemas.api import (
    MAX_ID,
    UNREACHABLE_DATABASE,
    ArtifactOut,
    ManifestOut,
    Page,
    RatingIn,
    RatingOut,
    TrialDetail,
    error_responses,
)
from gentune.service.studies.ratings import ANONYMOUS, rate
from gentune.service.studies.views import describe_artifacts, trial_detail

router = APIRouter(
    prefix="/trials",
    tags=["trials"],
    responses=error_responses(
        {
            401: "A token is needed (GENTUNE_PROTECT_READS).",
            422: "The input is not valid; errors name the fields.",
            503: UNREACHABLE_DATABASE,
        }
    ),
)
NOT_FOUND = error_responses({404: "No such trial or checkpoint."})
TrialId = Annotated[int, Path(ge=1, le=MAX_ID, description="The trial's id.")]


@router.get("/{trial_id:int}", responses=NOT_FOUND)
def get_trial(trial_id: TrialId, repo: RepositoryDep, base_url: BaseUrlDep) -> TrialDetail:
    return trial_detail(repo, repo.get_trial(trial_id), base_url)


@router.get("/{trial_id:int}/manifest", responses=NOT_FOUND)
def get_manifest(trial_id: TrialId, repo: RepositoryDep, base_url: BaseUrlDep) -> ManifestOut:
    """What the trial ran with and what it reported: ``gentune reproduce`` runs it again
    from this and compares."""
    trial = repo.get_trial(trial_id)
    detail = trial_detail(repo, trial, base_url)
    study = repo.get_study(trial.study_id)
    seed = detail.config.get("seed")
    return ManifestOut(
        trial_id=trial.id,
        study_id=study.id,
        number=trial.number,
        state=detail.state,
        trainer=study.trainer,
        config=detail.config,
        seed=seed if isinstance(seed, int) else None,
        objective=study.spec["objective"],
        run_info=detail.run_info,
        metrics=detail.metrics,
    )


@router.post(
    "/{trial_id:int}/ratings",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        {
            401: "A token is needed.",
            403: "A login cookie without the CSRF header.",
            404: "No such trial.",
        }
    ),
)
def rate_trial(
    trial_id: TrialId, given: RatingIn, repo: RepositoryDep, who: WriterDep
) -> RatingOut:
    """A person's rating of the trial's samples: a score of 1 to 5, or a pick of them over
    another trial's of the same study. Stored with the rater's token name."""
    return rate(repo, trial_id, given, who.name if who else ANONYMOUS)


@router.get("/{trial_id:int}/ratings", responses=NOT_FOUND)
def list_ratings(trial_id: TrialId, repo: RepositoryDep) -> Page[RatingOut]:
    """Every rating of the trial: its scores, and the picks it won or lost."""
    repo.get_trial(trial_id)
    ratings = [RatingOut.model_validate(r, from_attributes=True) for r in repo.ratings_of(trial_id)]
    return Page(data=ratings, count=len(ratings))


@router.get("/{trial_id:int}/artifacts", responses=NOT_FOUND)
def list_artifacts(
    trial_id: TrialId, repo: RepositoryDep, base_url: BaseUrlDep
) -> Page[ArtifactOut]:
    """A trial's files: its best and last checkpoints and a sample grid per evaluation."""
    repo.get_trial(trial_id)
    artifacts = describe_artifacts(repo, trial_id, base_url)
    return Page(data=artifacts, count=len(artifacts))


@router.get(
    "/{trial_id:int}/artifacts/{kind}",
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {
            "content": {"application/octet-stream": {}, "image/png": {}},
            "description": "The file.",
        },
    },
)
def download_artifact(
    trial_id: TrialId,
    kind: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9-]+$")],
    repo: RepositoryDep,
    store: ArtifactStoreDep,
) -> FileResponse:
    trial = repo.get_trial(trial_id)
    artifact = repo.get_artifact(trial.id, kind)
    path = store.resolve(artifact.path)
    if not path.is_file():
        raise NotFound(
            f"The {kind} artifact of trial {trial_id} is recorded but its file is "
            "missing from the artifact store."
        )
    return FileResponse(
        path,
        media_type=media_type(artifact.path),
        filename=f"study{trial.study_id}-trial{trial.id}-{Path_(artifact.path).name}",
    )


@router.get(
    "/{trial_id:int}/checkpoint",
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The checkpoint, a torch.save'd dict.",
        },
    },
)
def download_checkpoint(
    trial_id: TrialId,
    repo: RepositoryDep,
    store: ArtifactStoreDep,
    kind: Annotated[Literal["best", "last"], Query(description="Which checkpoint.")] = "best",
) -> FileResponse:
    return download_artifact(trial_id, kind, repo, store)
