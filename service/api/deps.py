"""Request dependencies: settings, a database session that commits at the edge, auth."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from service.artifacts import ArtifactStore
from service.config import Settings
from service.db.repository import Repository
from service.db.session import session_scope
from service.errors import Unauthorized
from service.study_views import ViewCache


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_base_url(request: Request, settings: SettingsDep) -> str:
    """The URL links in responses start with: GENTUNE_PUBLIC_URL, else the request's own."""
    return (settings.public_url or str(request.base_url)).rstrip("/")


BaseUrlDep = Annotated[str, Depends(get_base_url)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    """One session per request: committed when the route returns, rolled back if it raises."""
    with session_scope(settings.database_url) as session:
        yield session


# scope="function": commit before the response goes out, so a 201 means the study is stored.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def get_repository(session: SessionDep) -> Repository:
    return Repository(session)


RepositoryDep = Annotated[Repository, Depends(get_repository)]


def get_artifact_store(settings: SettingsDep) -> ArtifactStore:
    return ArtifactStore(settings.artifact_dir)


ArtifactStoreDep = Annotated[ArtifactStore, Depends(get_artifact_store)]


async def raw_body(request: Request) -> bytes:
    """The request body as sent, for endpoints that take text rather than JSON."""
    return await request.body()


def get_view_cache(request: Request) -> ViewCache:
    cache: ViewCache = request.app.state.view_cache
    return cache


ViewCacheDep = Annotated[ViewCache, Depends(get_view_cache)]


def get_metrics_registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return registry


MetricsRegistryDep = Annotated[CollectorRegistry, Depends(get_metrics_registry)]


def require_token(request: Request, settings: SettingsDep) -> None:
    """With GENTUNE_API_TOKEN set, mutating requests need ``Authorization: Bearer <token>``."""
    if settings.api_token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = settings.api_token.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(
            "This endpoint needs the header 'Authorization: Bearer <token>' "
            "with the service's API token (GENTUNE_API_TOKEN)."
        )


class Paging:
    def __init__(
        self,
        settings: SettingsDep,
        offset: Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000, description="Items per page.")] = 50,
    ) -> None:
        self.offset = offset
        self.limit = min(limit, settings.page_size_max)


PagingDep = Annotated[Paging, Depends()]
