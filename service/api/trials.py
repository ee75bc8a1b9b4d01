"""/trials: one trial with its full metric history, and its checkpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from service.api.deps import ArtifactStoreDep, BaseUrlDep, RepositoryDep
from service.errors import NotFound
from service.schemas.api import ErrorOut, TrialDetail
from service.studies import trial_detail

router = APIRouter(prefix="/trials", tags=["trials"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such trial or checkpoint."}
}


@router.get("/{trial_id}", responses=NOT_FOUND)
def get_trial(trial_id: int, repo: RepositoryDep, base_url: BaseUrlDep) -> TrialDetail:
    return trial_detail(repo, repo.get_trial(trial_id), base_url)


@router.get(
    "/{trial_id}/checkpoint",
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
    trial_id: int,
    repo: RepositoryDep,
    store: ArtifactStoreDep,
    kind: Annotated[Literal["best", "last"], Query(description="Which checkpoint.")] = "best",
) -> FileResponse:
    trial = repo.get_trial(trial_id)
    artifact = repo.get_artifact(trial.id, kind)
    path = store.resolve(artifact.path)
    if not path.is_file():
        raise NotFound(
            f"The {kind} checkpoint of trial {trial_id} is recorded but its file is "
            "missing from the artifact store."
        )
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"study{trial.study_id}-trial{trial.id}-{kind}.pt",
    )
