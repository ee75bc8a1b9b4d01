"""The Python client of gentune's REST API: what the ``gentune`` command uses, and what a
notebook or a script imports to submit and follow studies::

    client = Client("http://127.0.0.1:8000")
    study = client.post("/studies", json=definition)
    best = client.get(f"/studies/{study['id']}/best")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gentune.service.errors import FieldError

API_PATH = "/api/v1"
TOKEN_ENV = "GENTUNE_API_TOKEN"
TRANSIENT_STATUSES = frozenset({502, 503, 504})
"""Answers of a service that is restarting, or of a proxy that lost it: worth a retry."""


class ApiError(Exception):
    """The service refused a call: its HTTP status, its own ``detail`` and, for a refused
    body, one ``FieldError`` per field (with the line in a submitted YAML text, when known)."""

    def __init__(
        self, status_code: int | None, detail: str, errors: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.errors = tuple(errors)

    @property
    def transient(self) -> bool:
        """True when asking again later may well succeed (a restart, a lost proxy)."""
        return self.status_code is None or self.status_code in TRANSIENT_STATUSES

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        """The error an error response carries, in the API's words."""
        try:
            body = response.json()
        except json.JSONDecodeError:
            return cls(response.status_code, response.text[:500])
        if not isinstance(body, dict):
            return cls(response.status_code, str(body))
        detail = str(body["detail"]) if "detail" in body else str(body)
        return cls(response.status_code, detail, _field_errors(body.get("errors")))


class ServiceUnreachable(ApiError):
    """No answer came from the service at ``url`` (refused, timed out, cut off): there is no
    status, and the message is the network's."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(None, reason)
        self.url = url

    def __str__(self) -> str:
        return self.detail


class Client:
    """Calls to one gentune service at ``url`` (``http://host:port``). The token, given or
    taken from ``GENTUNE_API_TOKEN``, goes on every call, reads and downloads included: a
    service may protect its reads (``GENTUNE_PROTECT_READS``)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30,
        *,
        download_timeout: float = 300,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token or os.environ.get(TOKEN_ENV)
        self.timeout = timeout
        self.download_timeout = download_timeout

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` under ``/api/v1`` with the query ``params`` (those set to None are
        left out); the answer's JSON."""
        return _json_of(self._send("GET", self._api(path), params=_given(params)))

    def post(
        self,
        path: str,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST a JSON body, or ``content`` as it is (with its ``Content-Type`` in
        ``headers``), to ``path`` under ``/api/v1``; the answer's JSON."""
        return _json_of(
            self._send("POST", self._api(path), json=json, content=content, headers=headers)
        )

    def download(self, url_or_path: str, **params: Any) -> bytes:
        """The bytes of a file: a full URL the API gave (a checkpoint's ``checkpoint_url``)
        or a path under ``/api/v1`` (``/studies/1/export``), with the query ``params``."""
        url = url_or_path if "://" in url_or_path else self._api(url_or_path)
        response = self._send("GET", url, params=_given(params), timeout=self.download_timeout)
        if response.status_code >= 400:
            raise ApiError.of(response)
        return response.content

    def _api(self, path: str) -> str:
        return f"{self.url}{API_PATH}/{path.lstrip('/')}"

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request with the token on it; no answer at all raises ``ServiceUnreachable``."""
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        sent.update(headers or {})
        try:
            return httpx.request(
                method, url, headers=sent, timeout=timeout or self.timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            where = self.url if url.startswith(self.url) else url
            raise ServiceUnreachable(where, str(exc) or type(exc).__name__) from exc


def _json_of(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None when it has no body); else its ``ApiError``."""
    if response.status_code >= 400:
        raise ApiError.of(response)
    if not response.content:
        return None
    try:
        return response.json()
    except json.JSONDecodeError:
        raise ApiError(response.status_code, f"not JSON: {response.text[:200]}") from None


def _given(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def _field_errors(errors: Any) -> list[FieldError]:
    """The API's ``errors`` list (``field``, ``message``, ``line``) as ``FieldError``s."""
    if not isinstance(errors, list):
        return []
    return [
        FieldError(str(e.get("field", "")), str(e.get("message", "")), e.get("line"))
        for e in errors
        if isinstance(e, dict)
    ]
