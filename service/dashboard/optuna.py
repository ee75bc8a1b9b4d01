"""optuna-dashboard, served under ``/optuna`` on the same storage as gentune's studies.

optuna-dashboard's page is written to live at the root of its own server: its HTML loads
``/static/bundle.js``, its client calls ``/api/...`` and its router lives at ``/dashboard``.
``OptunaDashboardUnderPrefix`` is a small WSGI wrapper that serves the page and its bundle
with those three addresses moved under the prefix, and hands every other read to
optuna-dashboard unchanged (mounted, so it sees the prefix as SCRIPT_NAME).

It is read-only: optuna-dashboard can create and delete studies, tell trials and write notes,
and a gentune study whose Optuna study was changed behind its back could not be resumed.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# The API client is built with no base URL ("(void 0)") right after its response handler.
_CLIENT_BASE = re.compile(r"(handleResponse\([a-z]\)\{.{0,400}?\}\}\()void 0(\))", re.DOTALL)
_ROUTER_PREFIX = 'url_prefix:"/dashboard"'


class OptunaDashboardUnderPrefix:
    """optuna-dashboard's WSGI app for ``database_url``, built on first use, under ``prefix``."""

    def __init__(self, database_url: str, prefix: str = "/optuna") -> None:
        self.database_url = database_url
        self.prefix = prefix.rstrip("/")
        self._app: WsgiApp | None = None
        self._storage: Any = None
        self._bundle: bytes | None = None
        self._bundle_gz: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _refuse(
                start_response,
                "403 Forbidden",
                "gentune serves optuna-dashboard read-only: studies are changed through "
                "gentune's API (/api/v1).",
            )
        if path.startswith("/csv/"):
            return _refuse(
                start_response,
                "404 Not Found",
                "gentune does not serve optuna-dashboard's CSV download, which writes params "
                "as a spreadsheet would run them (formulas); use gentune's export, "
                "/api/v1/studies/<id>/export?format=trials.csv.",
            )
        # optuna-dashboard's static files read Accept-Encoding and fail without it.
        environ.setdefault("HTTP_ACCEPT_ENCODING", "identity")
        if path == "/":
            start_response("302 Found", [("Location", f"{self.prefix}/dashboard")])
            return [b""]
        if path == "/static/bundle.js":
            return self._serve_bundle(environ, start_response)
        app = self._inner()
        if path.startswith("/by-name/"):
            return self._redirect_to_study(path.removeprefix("/by-name/"), start_response)
        if path == "/dashboard" or path.startswith("/dashboard/"):
            return self._serve_page(app, environ, start_response)
        return app(environ, start_response)

    def _inner(self) -> WsgiApp:
        with self._lock:
            if self._app is None:
                from optuna_dashboard import wsgi

                from gentune.service.db.session import optuna_storage

                self._storage = optuna_storage(self.database_url)
                self._app = wsgi(self._storage)
            return self._app

    def _redirect_to_study(self, name: str, start_response: StartResponse) -> Iterable[bytes]:
        """``/by-name/gentune-12``: optuna-dashboard's page of that Optuna study (its pages
        are addressed by Optuna's numeric id, which gentune does not keep)."""
        try:
            study_id = self._storage.get_study_id_from_name(name)
        except KeyError:
            return _refuse(
                start_response,
                "404 Not Found",
                "no Optuna study of that name (yet): it is created when the gentune study starts.",
            )
        start_response("302 Found", [("Location", f"{self.prefix}/dashboard/studies/{study_id}")])
        return [b""]

    def _serve_page(
        self, app: WsgiApp, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured.update(status=status, headers=headers)

        environ = {**environ, "HTTP_ACCEPT_ENCODING": "identity"}
        body = b"".join(app(environ, keep))
        body = body.replace(b'src="/static/', f'src="{self.prefix}/static/'.encode())
        headers = [
            (name, value)
            for name, value in captured["headers"]
            if name.lower() not in ("content-length", "content-encoding")
        ]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    def _serve_bundle(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        plain, zipped = self._patched_bundle()
        use_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        body = zipped if use_gzip else plain
        headers = [
            ("Content-Type", "application/javascript"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "max-age=3600"),
            ("Vary", "Accept-Encoding"),
        ]
        if use_gzip:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    def _patched_bundle(self) -> tuple[bytes, bytes]:
        with self._lock:
            if self._bundle is None or self._bundle_gz is None:
                import optuna_dashboard

                source = Path(optuna_dashboard.__file__).parent / "public" / "bundle.js"
                text = source.read_text(encoding="utf-8")
                text, n_client = _CLIENT_BASE.subn(rf'\g<1>"{self.prefix}"\g<2>', text, count=1)
                n_router = text.count(_ROUTER_PREFIX)
                text = text.replace(_ROUTER_PREFIX, f'url_prefix:"{self.prefix}/dashboard"')
                if n_client != 1 or n_router != 1:
                    log.warning(
                        "this optuna-dashboard version's bundle did not match the expected "
                        "layout (client base %d, router prefix %d); /optuna may not load",
                        n_client,
                        n_router,
                    )
                self._bundle = text.encode("utf-8")
                self._bundle_gz = gzip.compress(self._bundle, compresslevel=6)
            return self._bundle, self._bundle_gz


def _refuse(start_response: StartResponse, status: str, reason: str) -> Iterable[bytes]:
    """An error in optuna-dashboard's own shape (``{"reason": ...}``), which its pages show."""
    body = json.dumps({"reason": reason}).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
