"""/session: the dashboard's login. A valid token goes into an HttpOnly cookie, beside a CSRF
cookie the dashboard's scripts echo in a header on every change."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from gentune.service.api.deps import (
    SettingsDep,
    client_address,
    get_tokens,
    own_hosts,
    reader_of_page,
)
from gentune.service.auth import (
    CSRF_COOKIE,
    MAX_TOKEN_LENGTH,
    TOKEN_COOKIE,
    TokenThrottle,
    new_csrf_token,
)
from gentune.service.config import Settings
from gentune.service.errors import Conflict, Forbidden, TooManyRequests, Unauthorized
from gentune.service.schemas.api import error_responses

router = APIRouter(prefix="/session", tags=["session"])


class SessionOut(BaseModel):
    auth: bool = Field(description="Whether the service asks for tokens at all.")
    protect_reads: bool = Field(description="Whether reading needs a token too.")
    name: str | None = Field(description="Whom the login cookie names; null when none.")


class LoginIn(BaseModel):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)


def _session(request: Request, settings: Settings, name: str | None) -> SessionOut:
    tokens = get_tokens(request)
    return SessionOut(
        auth=tokens.enabled, protect_reads=tokens.enabled and settings.protect_reads, name=name
    )


@router.get("")
def get_session(request: Request, settings: SettingsDep) -> SessionOut:
    """Whether the service needs tokens, and who is logged in on this browser."""
    principal = reader_of_page(request)
    return _session(request, settings, principal.name if principal else None)


ERRORS = error_responses(
    {
        401: "Not a token the service accepts.",
        403: "The login came from a page of another site.",
        409: "The service has no tokens to log in with.",
        422: "The body is not a login; errors name the fields.",
        429: "Too many failed logins from this address.",
    }
)


@router.post("", responses=ERRORS)
def log_in(
    login: LoginIn, request: Request, response: Response, settings: SettingsDep
) -> SessionOut:
    """Log the dashboard in: checks the token and keeps it in an HttpOnly cookie."""
    tokens = get_tokens(request)
    if not tokens.enabled:
        raise Conflict("This service has no tokens (GENTUNE_API_TOKEN); there is no login.")
    origin = request.headers.get("origin")
    if origin is not None and (
        origin == "null" or urlsplit(origin).netloc not in own_hosts(request, settings)
    ):
        raise Forbidden(f"Logins from pages of {origin} are refused; use the service's own.")
    client = client_address(request)
    throttle: TokenThrottle = request.app.state.token_throttle
    wait = throttle.retry_after(client)
    if wait:
        raise TooManyRequests(f"Too many failed logins; try again in {wait} s.", wait)
    name = tokens.identify(login.token)
    if name is None:
        throttle.failed(client)
        raise Unauthorized("That is not a token this service accepts.")
    secure = settings.cookie_secure or request.url.scheme == "https"
    cookie: dict[str, Any] = {
        "max_age": settings.session_max_age_s,
        "path": "/",
        "samesite": "strict",
        "secure": secure,
    }
    response.set_cookie(TOKEN_COOKIE, login.token, httponly=True, **cookie)
    response.set_cookie(CSRF_COOKIE, new_csrf_token(), httponly=False, **cookie)
    return _session(request, settings, name)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def log_out(response: Response) -> None:
    """Forget this browser's login."""
    for name in (TOKEN_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")
