"""How a command reaches the service: the ``--url`` and ``--token`` options, and the
service's refusals printed in its own words (exit code 1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from gentune.service.cli.render import fail
from gentune.service.client import ApiError, Client, ServiceUnreachable
from gentune.service.errors import FieldError

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOption = Annotated[
    str, typer.Option("--url", envvar="GENTUNE_URL", help="Base URL of the gentune service.")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="GENTUNE_API_TOKEN", help="API token (sent on reads too)."),
]

P = ParamSpec("P")
R = TypeVar("R")


def reports_api_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A command whose calls the service refuses, or cannot answer, ends with the
    service's own words on stderr and exit code 1 instead of a traceback."""

    @functools.wraps(command)
    def reporting(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as error:
            fail(error_words(error))

    return reporting


def error_words(error: ApiError, source: Path | None = None) -> str:
    """What ``gentune`` says of a refused call; ``source`` is the file the body came from,
    so that each refused field is named as FILE:LINE."""
    if isinstance(error, ServiceUnreachable):
        return f"cannot reach the gentune service at {error.url}: {error}"
    if error.errors:
        lines = "\n".join(_field_error_line(field, source) for field in error.errors)
        return f"{error.status_code}: the service refused it:\n{lines}"
    return f"{error.status_code}: {error.detail}"


def _field_error_line(error: FieldError, source: Path | None) -> str:
    """One refused field as the API words it; under the file's name and line when known."""
    if source is not None:
        where = f"{source}:{error.line}" if error.line else str(source)
        return f"{where}: {error.field}: {error.message}"
    line = f" (line {error.line})" if error.line else ""
    return f"  {error.field}: {error.message}{line}"


def downloaded(client: Client, url_or_path: str, **params: object) -> bytes:
    """A file the API holds (a checkpoint): a download cut off fails in the network's
    words, a refused one in the service's."""
    try:
        return client.download(url_or_path, **params)
    except ServiceUnreachable as error:
        fail(f"download failed: {error}")
