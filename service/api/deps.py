"""Request dependencies: settings, a database session that commits at the edge, auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from gentune.service.artifacts import ArtifactStore
from gentune.service.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    TOKEN_COOKIE,
    Principal,
    Tokens,
    TokenThrottle,
    authenticate,
    check_csrf,
    check_origin,
)
from gentune.service.config import Settings
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from gentune.service.errors import TooManyRequests, Unauthorized, UnsupportedMediaType
from gentune.service.studies.charts import ViewCache
from gentune.service.studies.definition_text import check_json_keys


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


DEFINITION_TYPES = (
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
    "application/json",
)
"""What a definition sent as text may be labelled: never a type a page of another site can
send without the browser asking first (text/plain, forms)."""


async def unique_json_keys(request: Request) -> None:
    """A JSON definition that gives a key twice is refused (422 naming it), not read with
    the last value silently winning."""
    check_json_keys(await request.body())


async def definition_text(request: Request) -> bytes:
    """The request body as sent, for endpoints that take a definition as YAML or JSON text."""
    given = request.headers.get("content-type", "")
    if given.partition(";")[0].strip().lower() not in DEFINITION_TYPES:
        raise UnsupportedMediaType(
            f"Send the definition with 'Content-Type: application/yaml' (or application/json), "
            f"not {given or 'none'!r}: a page of another site can post {given or 'that'} "
            "without asking, so it is refused."
        )
    return await request.body()


def get_view_cache(request: Request) -> ViewCache:
    cache: ViewCache = request.app.state.view_cache
    return cache


ViewCacheDep = Annotated[ViewCache, Depends(get_view_cache)]


def get_summary_cache(request: Request) -> ViewCache:
    """Finished studies' summaries for the study list (their own cache: a long list would
    push the study pages' views out of the other)."""
    cache: ViewCache = request.app.state.summary_cache
    return cache


SummaryCacheDep = Annotated[ViewCache, Depends(get_summary_cache)]


def get_metrics_registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return registry


MetricsRegistryDep = Annotated[CollectorRegistry, Depends(get_metrics_registry)]


def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _principal(request: Request, tokens: Tokens) -> Principal | None:
    """Who the request's token names. A bearer token is refused (429) while its address has
    sent too many wrong ones, and a wrong one counts against its address."""
    authorization = request.headers.get("authorization")
    throttle: TokenThrottle = request.app.state.token_throttle
    client = client_address(request)
    if authorization:
        wait = throttle.retry_after(client)
        if wait:
            raise TooManyRequests(
                f"Too many wrong tokens from this address; try again in {wait} s.", wait
            )
    try:
        return authenticate(tokens, authorization, request.cookies.get(TOKEN_COOKIE))
    except Unauthorized:
        throttle.failed(client)
        raise


def require_writer(request: Request, settings: SettingsDep) -> Principal | None:
    """A change comes from no page or the service's own (tokens or not); with tokens set, it
    needs a token: a bearer header, or the dashboard's login cookie with its CSRF header.
    Returns who it is (None when the service has no tokens)."""
    check_origin(request.headers.get("origin"), own_hosts(request, settings))
    tokens = get_tokens(request)
    if not tokens.enabled:
        return None
    principal = _principal(request, tokens)
    if principal is None:
        raise Unauthorized(
            "This needs a token: send 'Authorization: Bearer <token>' "
            "(GENTUNE_API_TOKEN for the CLI), or log in on the dashboard."
        )
    if principal.via == "cookie":
        check_csrf(request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE))
    return principal


def own_hosts(request: Request, settings: Settings) -> set[str]:
    """Host names (with ports) this service is reached at, for Origin checks."""
    own = {request.headers.get("host", "")}
    if settings.public_url:
        own.add(urlsplit(settings.public_url).netloc)
    return own


WriterDep = Annotated[Principal | None, Depends(require_writer)]


def require_reader(request: Request, settings: SettingsDep) -> Principal | None:
    """With GENTUNE_PROTECT_READS (and tokens) set, reading needs a token too."""
    tokens = get_tokens(request)
    if not (tokens.enabled and settings.protect_reads):
        return None
    principal = _principal(request, tokens)
    if principal is None:
        raise Unauthorized(
            "This service lets only token holders read (GENTUNE_PROTECT_READS): send "
            "'Authorization: Bearer <token>', or log in on the dashboard."
        )
    return principal


def reader_of_page(request: Request) -> Principal | None:
    """For pages: who the login cookie names, or None (no exception, pages redirect)."""
    tokens = get_tokens(request)
    cookie = request.cookies.get(TOKEN_COOKIE)
    name = tokens.identify(cookie) if cookie else None
    return Principal(name, "cookie") if name else None


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
