"""/health: the service answers and its database too."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from gentune import __version__
from gentune.service.api.deps import SessionDep
from gentune.service.schemas.api import UNREACHABLE_DATABASE, HealthOut, error_responses

router = APIRouter(tags=["health"])


@router.get("/health", responses=error_responses({503: UNREACHABLE_DATABASE}))
def health(session: SessionDep) -> HealthOut:
    session.execute(text("SELECT 1"))
    return HealthOut(status="ok", database="ok", version=__version__)
