"""The dashboard's pages and their static files, all served by the service (no CDN).

Each page is its ``<main>`` (a static HTML file) in the one frame of ``page.html``; its
script reads the REST API (``/api/v1``) and redraws while the study runs. Plotly's JS comes
from the ``plotly`` Python package.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Annotated

import plotly
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse

from gentune.service.api.deps import get_tokens, reader_of_page
from gentune.service.auth import login_url
from gentune.service.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",  # Plotly sets inline styles
        "script-src 'self' 'unsafe-eval'",  # Plotly's WebGL parallel coordinates compile code
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)

NAV = (
    '    <nav><a href="/">Studies</a><a href="/optuna/dashboard">Optuna dashboard</a>'
    '<a href="/docs">API</a></nav>\n'
    '    <span id="live" class="live"></span>\n'
    '    <span id="session" class="session"></span>'
)


@dataclass(frozen=True)
class Page:
    """A page: its title, the scripts it loads, and whether it has the site's navigation."""

    title: str
    scripts: tuple[str, ...]
    nav: bool = True

    def html(self, main: str) -> bytes:
        scripts = "\n".join(
            f'  <script defer src="/assets/{name}"></script>'
            if name == "plotly.min.js"
            else f'  <script type="module" src="/assets/{name}"></script>'
            for name in self.scripts
        )
        frame = Template((STATIC_DIR / "page.html").read_text(encoding="utf-8"))
        return frame.substitute(
            title=self.title, scripts=scripts, nav=NAV if self.nav else "", main=main
        ).encode()


PAGES = {
    "login.html": Page("log in", ("login.js",), nav=False),
    "studies.html": Page("studies", ("studies.js",)),
    "study.html": Page("study", ("plotly.min.js", "study.js")),
    "trial.html": Page("trial", ("plotly.min.js", "trial.js")),
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


class AssetCache:
    """Static files read and gzipped once per process; served with an ETag."""

    def __init__(self) -> None:
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Asset:
        with self._lock:
            asset = self._assets.get(name)
        if asset is not None:
            return asset
        path = PLOTLY_JS if name == "plotly.min.js" else STATIC_DIR / name
        if path.parent != STATIC_DIR and path != PLOTLY_JS or not path.is_file():
            raise NotFound(f"No dashboard file named {name}.")
        body = PAGES[name].html(path.read_text("utf-8")) if name in PAGES else path.read_bytes()
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith("javascript"):
            media_type += "; charset=utf-8"
        asset = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=6),
            media_type=media_type,
            etag='"' + hashlib.sha1(body).hexdigest()[:20] + '"',
        )
        with self._lock:
            self._assets[name] = asset
        return asset


ASSETS = AssetCache()


def _send(request: Request, asset: Asset, headers: dict[str, str]) -> Response:
    headers = {**headers, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _page(request: Request, name: str) -> Response:
    settings = request.app.state.settings
    if settings.protect_reads and get_tokens(request).enabled and not reader_of_page(request):
        return RedirectResponse(login_url(request.url.path), status_code=303)
    return _send(request, ASSETS.get(name), PAGE_HEADERS)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _send(request, ASSETS.get("login.html"), PAGE_HEADERS)


@router.get("/")
def studies_page(request: Request) -> Response:
    return _page(request, "studies.html")


@router.get("/studies/{study_id}")
def study_page(request: Request, study_id: int) -> Response:
    return _page(request, "study.html")


@router.get("/trials/{trial_id}")
def trial_page(request: Request, trial_id: int) -> Response:
    return _page(request, "trial.html")


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return _send(request, ASSETS.get("favicon.svg"), {"Cache-Control": "max-age=86400"})


@router.get("/assets/{name}")
def asset(
    request: Request,
    name: Annotated[str, PathParam(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")],
) -> Response:
    return _send(request, ASSETS.get(name), {"Cache-Control": "no-cache"})
