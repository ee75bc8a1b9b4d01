"""/studies: submit, list, inspect and cancel studies; their trials and best result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel

from service import study_views
from service.api.deps import (
    BaseUrlDep,
    PagingDep,
    RepositoryDep,
    SettingsDep,
    ViewCacheDep,
    raw_body,
    require_token,
)
from service.db.repository import FINISHED_STUDY_STATES, TRIAL_SORT_KEYS
from service.definition_text import spec_from_text
from service.errors import FieldError, InvalidInput
from service.schemas.api import (
    BestOut,
    CurvesOut,
    ErrorOut,
    ImportancesOut,
    Page,
    StudyOut,
    TrialColumns,
    TrialOut,
)
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
TrialSortKey = Literal["number", "value", "state", "last_step", "created_at", "finished_at"]
assert set(get_args(TrialSortKey)) == set(TRIAL_SORT_KEYS)
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


YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A study definition as YAML or JSON text (the files in search_spaces/).",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/yaml",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_token)],
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=YAML_BODY,
)
def submit_study_text(
    body: Annotated[bytes, Depends(raw_body)],
    repo: RepositoryDep,
    settings: SettingsDep,
    base_url: BaseUrlDep,
) -> StudyOut:
    """Submit a definition as YAML or JSON text; each error names its field and line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldError("body", "is not UTF-8 text")]) from exc
    spec, parsed = spec_from_text(text)
    try:
        trainer = validate_spec(spec, settings)
    except InvalidInput as exc:
        raise InvalidInput(parsed.locate(exc.errors)) from exc
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
    sort: Annotated[TrialSortKey, Query(description="Column to order by.")] = "number",
    order: Annotated[Literal["asc", "desc"], Query(description="Sort direction.")] = "asc",
) -> Page[TrialOut]:
    """A page of the study's trials; trials without a value sort last in either order."""
    repo.get_study(study_id)
    trials, count = repo.list_trials(
        study_id, paging.offset, paging.limit, state, sort, descending=order == "desc"
    )
    return Page(data=[describe_trial(t) for t in trials], count=count)


def _cached(
    request: Request,
    cache: study_views.ViewCache,
    key: tuple[Any, ...],
    revision: str,
    compute: Callable[[], BaseModel],
) -> Response:
    """Serve a view from the cache, with an ETag so a poller that has it gets a bare 304."""
    body, etag = cache.get(key, revision, compute)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/{study_id}/columns", response_model=TrialColumns, responses=NOT_FOUND)
def trial_columns(
    study_id: int, request: Request, repo: RepositoryDep, cache: ViewCacheDep
) -> Response:
    """Every trial's number, state, value, best-so-far and params as columns: one request
    for a progress curve or a parallel-coordinates plot of the whole study."""
    revision = repo.study_revision(study_id)
    study = repo.get_study(study_id)
    return _cached(
        request,
        cache,
        ("columns", study_id),
        revision,
        lambda: study_views.trial_columns(repo, study, revision),
    )


@router.get("/{study_id}/curves", response_model=CurvesOut, responses=NOT_FOUND)
def metric_curves(
    study_id: int,
    request: Request,
    repo: RepositoryDep,
    cache: ViewCacheDep,
    metric: Annotated[
        str | None, Query(max_length=200, description="Metric to draw; default: the objective.")
    ] = None,
    best: Annotated[int, Query(ge=0, le=200, description="Best trials by value.")] = 30,
    recent: Annotated[int, Query(ge=0, le=200, description="Latest trials.")] = 20,
) -> Response:
    """One metric over steps for the study's best and latest trials (pruned ones end where
    they were stopped, with their reason)."""
    revision = repo.study_revision(study_id)
    study = repo.get_study(study_id)
    name = metric or study.spec["objective"]["metric"]
    return _cached(
        request,
        cache,
        ("curves", study_id, name, best, recent),
        revision,
        lambda: study_views.curves(repo, study, revision, name, best, recent),
    )


@router.get("/{study_id}/importances", response_model=ImportancesOut, responses=NOT_FOUND)
def param_importances(
    study_id: int, request: Request, repo: RepositoryDep, cache: ViewCacheDep
) -> Response:
    """Optuna's parameter importances (fANOVA) over the completed trials."""
    study = repo.get_study(study_id)
    # Importances change only when a trial completes: key them on that, not on every report,
    # and on big studies recompute once per 5% more completed trials (fANOVA takes seconds).
    completed = repo.trial_counts(study_id)["completed"]
    every = 1 if study.state in FINISHED_STUDY_STATES else max(1, completed // 20)
    revision = f"completed-{completed - completed % every}"
    return _cached(
        request,
        cache,
        ("importances", study_id),
        revision,
        lambda: study_views.importances(repo, study, revision),
    )


@router.get(
    "/{study_id}/best",
    responses={
        404: {"model": ErrorOut, "description": "No such study, or no completed trial yet."}
    },
)
def get_best(study_id: int, repo: RepositoryDep, base_url: BaseUrlDep) -> BestOut:
    """The best completed trial: its config, value, metrics and checkpoint URL."""
    return best_of_study(repo, repo.get_study(study_id), base_url)
