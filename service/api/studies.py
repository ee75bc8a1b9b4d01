"""/studies: submit, list, inspect and cancel studies; their trials and best result."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel

from gentune.service.api.deps import (
    BaseUrlDep,
    PagingDep,
    RepositoryDep,
    SettingsDep,
    SummaryCacheDep,
    ViewCacheDep,
    WriterDep,
    definition_text,
    unique_json_keys,
)
from gentune.service.db.repository import FINISHED_STUDY_STATES, TRIAL_SORT_KEYS
from gentune.service.errors import FieldError, InvalidInput
from gentune.service.schemas.api import (
    MAX_ID,
    UNREACHABLE_DATABASE,
    BestOut,
    CurvesOut,
    ImportancesOut,
    Page,
    StudyOut,
    TrialColumns,
    TrialOut,
    error_responses,
)
from gentune.service.schemas.study import StudySpec
from gentune.service.studies import charts
from gentune.service.studies.definition_text import spec_from_text
from gentune.service.studies.export import export_json, metrics_csv, trials_csv
from gentune.service.studies.fine_tuning import resolve_init_from
from gentune.service.studies.validation import resolved_definition, validate_spec
from gentune.service.studies.views import (
    best_of_study,
    describe_study,
    describe_trial,
    study_list,
)
from gentune.service.studies.warm_start import refined_definition, resolve_warm_start

router = APIRouter(
    prefix="/studies",
    tags=["studies"],
    responses=error_responses(
        {
            401: "A token is needed (GENTUNE_PROTECT_READS).",
            422: "The input is not valid; errors name the fields.",
            503: UNREACHABLE_DATABASE,
        }
    ),
)


NOT_FOUND = error_responses({404: "No such study."})
WRITE_ERROR_TEXTS = {
    401: "A token is needed.",
    403: "Sent from a page of another site, or with the login cookie but without the CSRF header.",
}
WRITE_ERRORS = error_responses(WRITE_ERROR_TEXTS)
SUBMIT_ERRORS = error_responses(
    {**WRITE_ERROR_TEXTS, 413: "The body is larger than GENTUNE_MAX_BODY_BYTES."}
)


def _cached(
    request: Request,
    cache: charts.ViewCache,
    key: tuple[Any, ...],
    revision: str,
    compute: Callable[[], BaseModel],
) -> Response:
    """Serve a view from the cache, with an ETag so a poller that has it gets a bare 304."""
    return _respond(request, *cache.get(key, revision, compute))


def _tagged(request: Request, view: BaseModel) -> Response:
    """``view`` with an ETag of its bytes: a poller that sends it back while nothing it shows
    has changed gets a bare 304 (the server still reads the study; the network carries
    nothing)."""
    return _respond(request, *charts.json_with_etag(view))


def _respond(request: Request, body: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


def _etag_view(description: str, not_found: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a view served with an ETag (``_respond``), of a study or trial
    (``not_found``: it may not exist) or not."""
    etag = {
        "description": "Send it back in If-None-Match to get a 304 while nothing changed.",
        "required": True,
        "schema": {"type": "string"},
    }
    return {
        200: {"description": description, "headers": {"ETag": etag}},
        304: {"description": "Nothing changed since the ETag sent in If-None-Match."},
        **(NOT_FOUND if not_found else {}),
    }


TAGGED_VIEW = _etag_view("The view.")
CACHED_VIEW = _etag_view("The view, computed at most once per change of the study.")

StudyStateFilter = Literal["queued", "running", "completed", "failed", "cancelled"]
TrialStateFilter = Literal["pending", "running", "completed", "pruned", "failed"]
TrialSortKey = Literal[
    "number", "value", "state", "last_step", "created_at", "finished_at", "rating"
]
StudyId = Annotated[int, Path(ge=1, le=MAX_ID, description="The study's id.")]
assert set(get_args(TrialSortKey)) == set(TRIAL_SORT_KEYS)


def _links(**operations: str) -> dict[str, Any]:
    """OpenAPI links from a response with a study in it to operations on that study."""
    return {
        name: {"operationId": operation_id, "parameters": {"study_id": "$response.body#/id"}}
        for name, operation_id in operations.items()
    }


SUBMITTED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "The study, queued.",
        "links": _links(
            GetStudy="get_study",
            ListTrials="list_trials",
            TrialColumns="trial_columns",
            MetricCurves="metric_curves",
            ParamImportances="param_importances",
            GetBest="get_best",
            CancelStudy="cancel_study",
            RefinedDefinition="refined_definition",
        ),
    }
}
EXAMPLE_SPEC: dict[str, Any] = {
    "name": "ring8-gan",
    "trainer": "gan2d",
    "params": {"dataset": "ring8", "epochs": 3, "iters_per_epoch": 20},
    "search_space": {
        "lr_g": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "loss": {"type": "categorical", "choices": ["bce", "hinge"]},
    },
    "objective": {"metric": "mode_score", "direction": "maximize"},
    "sampler": {"type": "tpe", "seed": 0},
    "budget": {"n_trials": 4, "max_concurrent": 2},
}
EXAMPLE_YAML = """\
name: ring8-gan
trainer: gan2d
params: {dataset: ring8, epochs: 3, iters_per_epoch: 20}
search_space:
  lr_g: {type: float, low: 0.0001, high: 0.01, log: true}
  loss: {type: categorical, choices: [bce, hinge]}
objective: {metric: mode_score, direction: maximize}
sampler: {type: tpe, seed: 0}
budget: {n_trials: 4, max_concurrent: 2}
"""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="submit_study",
    responses={**SUBMITTED, **SUBMIT_ERRORS},
    dependencies=[Depends(unique_json_keys)],
)
def submit_study(
    spec: Annotated[
        StudySpec,
        Body(openapi_examples={"ring8": {"summary": "A small GAN study", "value": EXAMPLE_SPEC}}),
    ],
    repo: RepositoryDep,
    settings: SettingsDep,
    base_url: BaseUrlDep,
    who: WriterDep,
) -> StudyOut:
    """Validate a study definition against its trainer and queue it."""
    trainer = validate_spec(spec, settings)
    spec = resolve_init_from(repo, resolve_warm_start(repo, spec), trainer)
    study = repo.create_study(
        spec.name,
        spec.trainer,
        resolved_definition(spec, trainer, settings.default_timeout_s),
        who.name if who else None,
    )
    return describe_study(repo, study, base_url)


YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A study definition as YAML or JSON text (the files in search_spaces/), "
        "labelled application/yaml (or application/x-yaml, text/yaml, application/json).",
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": EXAMPLE_YAML},
            "application/json": {"schema": {"$ref": "#/components/schemas/StudySpec-Input"}},
        },
    }
}


@router.post(
    "/yaml",
    status_code=status.HTTP_201_CREATED,
    operation_id="submit_study_text",
    responses={
        **SUBMITTED,
        **SUBMIT_ERRORS,
        **error_responses({415: "The body is not labelled as YAML or JSON."}),
    },
    openapi_extra=YAML_BODY,
)
def submit_study_text(
    body: Annotated[bytes, Depends(definition_text)],
    repo: RepositoryDep,
    settings: SettingsDep,
    base_url: BaseUrlDep,
    who: WriterDep,
) -> StudyOut:
    """Submit a definition as YAML or JSON text; each error names its field and line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldError("body", "is not UTF-8 text")]) from exc
    spec, parsed = spec_from_text(text, settings.max_nesting_depth, settings.max_definition_values)
    try:
        trainer = validate_spec(spec, settings)
        spec = resolve_init_from(repo, resolve_warm_start(repo, spec), trainer)
    except InvalidInput as exc:
        raise InvalidInput(parsed.locate(exc.errors)) from exc
    study = repo.create_study(
        spec.name,
        spec.trainer,
        resolved_definition(spec, trainer, settings.default_timeout_s),
        who.name if who else None,
    )
    return describe_study(repo, study, base_url)


@router.get(
    "",
    operation_id="list_studies",
    response_model=Page[StudyOut],
    responses=_etag_view("A page of studies, newest first.", not_found=False),
)
def list_studies(
    request: Request,
    repo: RepositoryDep,
    base_url: BaseUrlDep,
    paging: PagingDep,
    cache: SummaryCacheDep,
    state: Annotated[StudyStateFilter | None, Query()] = None,
) -> Response:
    body = study_list(repo, cache, (paging.offset, paging.limit), state, base_url)
    return _respond(request, body, charts.etag_of(body))


@router.get(
    "/{study_id:int}", operation_id="get_study", response_model=StudyOut, responses=TAGGED_VIEW
)
def get_study(
    study_id: StudyId, request: Request, repo: RepositoryDep, base_url: BaseUrlDep
) -> Response:
    return _tagged(request, describe_study(repo, repo.get_study(study_id), base_url))


@router.post(
    "/{study_id:int}/cancel",
    operation_id="cancel_study",
    responses={
        200: {
            "description": "The study, cancelled or flagged for its worker to cancel.",
            "links": _links(GetStudy="get_study", CancelStudy="cancel_study"),
        },
        **NOT_FOUND,
        **WRITE_ERRORS,
        **error_responses({409: "The study has already finished."}),
    },
)
def cancel_study(
    study_id: StudyId, repo: RepositoryDep, base_url: BaseUrlDep, who: WriterDep
) -> StudyOut:
    """Cancel a study: queued ones at once, running ones as soon as their worker sees it."""
    return describe_study(repo, repo.request_cancel(study_id, who.name if who else None), base_url)


@router.get(
    "/{study_id:int}/trials",
    operation_id="list_trials",
    response_model=Page[TrialOut],
    responses=TAGGED_VIEW,
)
def list_trials(
    study_id: StudyId,
    request: Request,
    repo: RepositoryDep,
    paging: PagingDep,
    state: Annotated[TrialStateFilter | None, Query()] = None,
    sort: Annotated[TrialSortKey, Query(description="Column to order by.")] = "number",
    order: Annotated[Literal["asc", "desc"], Query(description="Sort direction.")] = "asc",
) -> Response:
    """A page of the study's trials; trials without a value sort last in either order."""
    repo.get_study(study_id)
    trials, count = repo.list_trials(
        study_id, paging.offset, paging.limit, state, sort, descending=order == "desc"
    )
    return _tagged(request, Page(data=[describe_trial(t) for t in trials], count=count))


@router.get(
    "/{study_id:int}/columns",
    operation_id="trial_columns",
    response_model=TrialColumns,
    responses=CACHED_VIEW,
)
def trial_columns(
    study_id: StudyId, request: Request, repo: RepositoryDep, cache: ViewCacheDep
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
        lambda: charts.trial_columns(repo, study, revision),
    )


@router.get(
    "/{study_id:int}/curves",
    operation_id="metric_curves",
    response_model=CurvesOut,
    responses=CACHED_VIEW,
)
def metric_curves(
    study_id: StudyId,
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
        lambda: charts.curves(repo, study, revision, name, best, recent),
    )


@router.get(
    "/{study_id:int}/importances",
    operation_id="param_importances",
    response_model=ImportancesOut,
    responses=CACHED_VIEW,
)
def param_importances(
    study_id: StudyId, request: Request, repo: RepositoryDep, cache: ViewCacheDep
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
        lambda: charts.importances(repo, study, revision),
    )


@router.get(
    "/{study_id:int}/best",
    operation_id="get_best",
    response_model=BestOut,
    responses={
        **TAGGED_VIEW,
        **error_responses({404: "No such study, or no completed trial yet."}),
    },
)
def get_best(
    study_id: StudyId, request: Request, repo: RepositoryDep, base_url: BaseUrlDep
) -> Response:
    """The best completed trial: its config, value, metrics and checkpoint URL."""
    return _tagged(request, best_of_study(repo, repo.get_study(study_id), base_url))


@router.get(
    "/{study_id:int}/refined",
    operation_id="refined_definition",
    response_model=StudySpec,
    response_model_exclude_none=True,
    responses=error_responses(
        {404: "No such study.", 409: "The study has no completed trial to refine around."}
    ),
)
def get_refined_definition(
    study_id: StudyId,
    repo: RepositoryDep,
    factor: Annotated[
        float,
        Query(gt=0, le=1, description="Each numeric range's new width, as a share of its old."),
    ] = 0.5,
    n_trials: Annotated[
        int | None,
        Query(ge=1, le=100_000, description="The follow-up's budget; default: the same."),
    ] = None,
) -> dict[str, Any]:
    """A follow-up study's definition, to submit as it is or edited: this study's, with
    numeric ranges narrowed around its best trial and a warm start from its best trials."""
    study = repo.get_study(study_id)
    best = repo.best_trial(study.id, study.spec["objective"]["direction"])
    return refined_definition(study, best, factor, n_trials)


EXPORT_FORMATS = {
    "json": ("application/json", "json"),
    "trials.csv": ("text/csv; charset=utf-8", "trials.csv"),
    "metrics.csv": ("text/csv; charset=utf-8", "metrics.csv"),
}


@router.get(
    "/{study_id:int}/export",
    operation_id="export_study",
    response_class=Response,
    responses={
        200: {
            "description": "The study's record as a download.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        **NOT_FOUND,
    },
)
def export_study(
    study_id: StudyId,
    repo: RepositoryDep,
    base_url: BaseUrlDep,
    format: Annotated[
        Literal["json", "trials.csv", "metrics.csv"],
        Query(
            description="json: the study, each trial's config and every metric at every step; "
            "trials.csv: one row per trial; metrics.csv: one row per trial, step and metric."
        ),
    ] = "json",
) -> Response:
    """The study's whole record as a file, to keep or to analyse elsewhere."""
    study = repo.get_study(study_id)
    if format == "json":
        body = json.dumps(export_json(repo, study, base_url), allow_nan=False)
    elif format == "trials.csv":
        body = trials_csv(repo, study)
    else:
        body = metrics_csv(repo, study)
    media_type, suffix = EXPORT_FORMATS[format]
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="study-{study_id}.{suffix}"'},
    )
