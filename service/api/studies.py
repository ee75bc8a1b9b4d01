"""/studies: submit, list, inspect and cancel studies; their trials and best result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status

from service.api.deps import BaseUrlDep, PagingDep, RepositoryDep, SettingsDep, require_token
from service.schemas.api import BestOut, ErrorOut, Page, StudyOut, TrialOut
from service.schemas.study import StudySpec
from service.studies import (
    best_of_study,
    describe_study,
    describe_trial,
    resolved_definition,
    validate_spec,
)

router = APIRouter(prefix="/studies", tags=["studies"])

StudyStateFilter = Literal["queued", "running", "completed", "failed", "cancelled"]
TrialStateFilter = Literal["running", "completed", "pruned", "failed"]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such study."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_token)],
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def submit_study(
    spec: StudySpec, repo: RepositoryDep, settings: SettingsDep, base_url: BaseUrlDep
) -> StudyOut:
    """Validate a study definition against its trainer and queue it."""
    trainer = validate_spec(spec, settings)
    study = repo.create_study(spec.name, spec.trainer, resolved_definition(spec, trainer))
    return describe_study(repo, study, base_url)


@router.get("")
def list_studies(
    repo: RepositoryDep,
    base_url: BaseUrlDep,
    paging: PagingDep,
    state: Annotated[StudyStateFilter | None, Query()] = None,
) -> Page[StudyOut]:
    studies, count = repo.list_studies(paging.offset, paging.limit, state)
    return Page(data=[describe_study(repo, s, base_url) for s in studies], count=count)


@router.get("/{study_id}", responses=NOT_FOUND)
def get_study(study_id: int, repo: RepositoryDep, base_url: BaseUrlDep) -> StudyOut:
    return describe_study(repo, repo.get_study(study_id), base_url)


@router.post(
    "/{study_id}/cancel",
    dependencies=[Depends(require_token)],
    responses={**NOT_FOUND, 401: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def cancel_study(study_id: int, repo: RepositoryDep, base_url: BaseUrlDep) -> StudyOut:
    """Cancel a study: queued ones at once, running ones as soon as their worker sees it."""
    return describe_study(repo, repo.request_cancel(study_id), base_url)


@router.get("/{study_id}/trials", responses=NOT_FOUND)
def list_trials(
    study_id: int,
    repo: RepositoryDep,
    paging: PagingDep,
    state: Annotated[TrialStateFilter | None, Query()] = None,
) -> Page[TrialOut]:
    repo.get_study(study_id)
    trials, count = repo.list_trials(study_id, paging.offset, paging.limit, state)
    return Page(data=[describe_trial(t) for t in trials], count=count)


@router.get(
    "/{study_id}/best",
    responses={
        404: {"model": ErrorOut, "description": "No such study, or no completed trial yet."}
    },
)
def get_best(study_id: int, repo: RepositoryDep, base_url: BaseUrlDep) -> BestOut:
    """The best completed trial: its config, value, metrics and checkpoint URL."""
    return best_of_study(repo, repo.get_study(study_id), base_url)
