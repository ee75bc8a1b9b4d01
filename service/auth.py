"""Who is calling: API tokens, sent by scripts as a bearer header or held by the dashboard in a
cookie after its login.

Tokens come from ``GENTUNE_API_TOKEN`` (one token, named ``default``) and from
``GENTUNE_API_TOKENS_FILE``, a YAML mapping of names to tokens, re-read when it changes, so a
token can be added or revoked without a restart. Every comparison is constant-time and every
token is compared, so timing tells nothing about which one came close.

A request authenticated by its cookie may change something only with the CSRF header the
dashboard's scripts send (``X-CSRF-Token``, equal to the ``gentune_csrf`` cookie): a page on
another site can make a browser send cookies, never read them or set that header. The cookies
are also ``SameSite=Strict``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode, urlsplit

import yaml
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gentune.service.config import Settings
from gentune.service.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

TOKEN_COOKIE = "gentune_token"
CSRF_COOKIE = "gentune_csrf"
CSRF_HEADER = "x-csrf-token"
SINGLE_TOKEN_NAME = "default"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 512
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class TokenFileError(ValueError):
    """The token file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Principal:
    name: str
    via: Literal["bearer", "cookie"]


def parse_token_file(text: str, source: str) -> list[tuple[str, bytes]]:
    """``name: token`` pairs from a token file's text; ``TokenFileError`` names what is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TokenFileError(f"{source} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TokenFileError(f"{source} must be a mapping of names to tokens ('alice: <token>')")
    entries: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for name, token in data.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise TokenFileError(
                f"{source}: the name {name!r} must be 1-64 letters, digits, or . _ @ - "
                "(it is recorded as who submitted a study)"
            )
        if not isinstance(token, str) or not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
            raise TokenFileError(
                f"{source}: the token of {name!r} must be a string of {MIN_TOKEN_LENGTH} to "
                f"{MAX_TOKEN_LENGTH} characters (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if token in seen:
            raise TokenFileError(f"{source}: {name!r} shares its token with another name")
        seen.add(token)
        entries.append((name, token.encode()))
    return entries


class Tokens:
    """The tokens the service accepts, with the token file re-read whenever it changes."""

    def __init__(self, settings: Settings) -> None:
        self.single = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self.path = Path(settings.api_tokens_file) if settings.api_tokens_file else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._from_file: list[tuple[str, bytes]] = []
        if self.path is not None:
            self._reload(strict=True)

    @property
    def enabled(self) -> bool:
        return self.single is not None or self.path is not None

    def _reload(self, strict: bool) -> None:
        assert self.path is not None
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            entries = parse_token_file(self.path.read_text(), str(self.path))
        except (OSError, TokenFileError) as error:
            if strict:
                raise TokenFileError(str(error)) from None
            # Keep the tokens last read: a half-saved file must not lock everyone out.
            log.error("token file not reloaded, keeping the previous tokens: %s", error)
            return
        with self._lock:
            self._stamp, self._from_file = stamp, entries

    def entries(self) -> list[tuple[str, bytes]]:
        if self.path is not None:
            self._reload(strict=False)
        single = [(SINGLE_TOKEN_NAME, self.single)] if self.single is not None else []
        with self._lock:
            return single + self._from_file

    def identify(self, given: str) -> str | None:
        """The name of the token ``given`` is, or None; compares against every token. One
        longer than any token may be is none (never cut to length: a right token with
        anything after it is wrong)."""
        candidate = given.encode()
        if len(candidate) > MAX_TOKEN_LENGTH:
            return None
        found: str | None = None
        for name, token in self.entries():
            if secrets.compare_digest(candidate, token) and found is None:
                found = name
        return found


class TokenThrottle:
    """Refuses tokens (logins and bearer headers) from a client address after too many wrong
    ones in a minute. The address is the one uvicorn resolves: behind a proxy that sets
    ``X-Forwarded-For`` from an address in ``FORWARDED_ALLOW_IPS`` (default 127.0.0.1), the
    user's own, so one client's guesses never lock the others out."""

    def __init__(self, failures: int = 10, window_s: float = 60.0) -> None:
        self.failures = failures
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.get(client)
            if not times:
                return 0
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) < self.failures:
                return 0
            return max(1, int(self.window_s - (now - times[0])) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._seen) > 10_000:  # bounded memory under a flood from many addresses
                self._seen.clear()
            self._seen.setdefault(client, deque()).append(time.monotonic())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def token_file_mode_warning(path: str) -> str | None:
    """A warning when the token file can be read by others than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"{path} is readable by other users (mode {mode & 0o777:o}); chmod 600 it"
    return None


def authenticate(tokens: Tokens, authorization: str | None, cookie: str | None) -> Principal | None:
    """Who sent the request: a bearer header is checked first (and must be right when sent),
    then the login cookie; None when neither names a token."""
    if authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        name = tokens.identify(given.strip())
        if name is None:
            raise Unauthorized(
                "The service does not accept this token (mistyped, or revoked from its token file)."
            )
        return Principal(name, "bearer")
    if cookie:
        name = tokens.identify(cookie)
        if name is not None:
            return Principal(name, "cookie")
    return None


def check_csrf(sent: str | None, cookie: str | None) -> None:
    """A cookie-authenticated change must carry the CSRF header equal to the CSRF cookie."""
    if not cookie or not sent or not secrets.compare_digest(sent.encode(), cookie.encode()):
        raise Forbidden(
            "This change came with the login cookie but without the dashboard's CSRF header; "
            "reload the page and try again, or send 'Authorization: Bearer <token>' instead."
        )


def check_origin(origin: str | None, own_hosts: set[str]) -> None:
    """A change a browser sends must come from this service's own pages: browsers name the
    page's origin on every POST and DELETE (``null`` from sandboxed frames and files), and a
    page of another site could otherwise make one without any token, when none is set.
    Scripts and the CLI send no Origin."""
    if origin is not None and (origin == "null" or urlsplit(origin).netloc not in own_hosts):
        raise Forbidden(
            f"Changes from pages of {origin} are refused: only the service's own pages, "
            "scripts and the CLI (which send no Origin) may change studies."
        )


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(host: str) -> str:
    """The name in a Host header, port aside and lower-cased (``[::1]:8000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def trusted_host_names(settings: Settings) -> list[str]:
    """GENTUNE_TRUSTED_HOSTS as a list, with GENTUNE_PUBLIC_URL's host."""
    names = [host_name(n) for n in settings.trusted_hosts.split(",") if n.strip()]
    if settings.public_url:
        public = urlsplit(settings.public_url).hostname
        if public:
            names.append(public.lower())
    return names


def host_is_trusted(host: str, trusted: list[str]) -> bool:
    name = host_name(host)
    for pattern in trusted:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class TrustedHosts:
    """ASGI wrapper answering only requests whose Host is one the service is known by: a page
    on another site that re-points its own name at this service's address (DNS rebinding)
    reaches it with its own name as Host, and gets 400. ``open_paths`` (the health check,
    which orchestrators call by address) answer any Host."""

    def __init__(self, app: ASGIApp, trusted: list[str], open_paths: tuple[str, ...]) -> None:
        self.app = app
        self.trusted = trusted
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("path") not in self.open_paths:
            host = HTTPConnection(scope).headers.get("host", "")
            if not host_is_trusted(host, self.trusted):
                response = JSONResponse(
                    {
                        "detail": f"This service does not answer to the host name "
                        f"{host_name(host)!r}. If that is how you reach it, add the name to "
                        "GENTUNE_TRUSTED_HOSTS (comma-separated) or set GENTUNE_PUBLIC_URL.",
                        "errors": [],
                    },
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def login_url(next_path: str) -> str:
    """The dashboard's login page, sending the browser back to ``next_path`` afterwards."""
    return "/login?" + urlencode({"next": next_path})


class ReadGuard:
    """ASGI wrapper for a mounted app (optuna-dashboard): with reads protected, it answers
    only requests that carry a token; a browser is sent to the login page. Wrong bearer
    tokens count against their address as the API's do (``throttle``)."""

    def __init__(
        self, app: ASGIApp, tokens: Tokens, protect_reads: bool, throttle: TokenThrottle
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.protect = protect_reads
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.protect and self.tokens.enabled:
            connection = HTTPConnection(scope)
            client = connection.client.host if connection.client else "unknown"
            authorization = connection.headers.get("authorization")
            response: Response | None = None
            wait = self.throttle.retry_after(client) if authorization else 0
            if wait:
                response = JSONResponse(
                    {"detail": f"Too many wrong tokens; try again in {wait} s.", "errors": []},
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
            else:
                try:
                    principal = authenticate(
                        self.tokens, authorization, connection.cookies.get(TOKEN_COOKIE)
                    )
                except Unauthorized:
                    self.throttle.failed(client)
                    principal = None
                if principal is None:
                    if "text/html" in connection.headers.get("accept", ""):
                        path = scope.get("root_path", "") + scope.get("path", "")
                        response = RedirectResponse(login_url(path), status_code=303)
                    else:
                        response = JSONResponse(
                            {"detail": "This service lets only token holders read.", "errors": []},
                            status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="gentune"'},
                        )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
