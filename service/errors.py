"""Typed domain errors; the API translates them once, at the edge, into JSON responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: a dotted path (``search_space.lr_g.low``) and a sentence."""

    field: str
    message: str
    line: int | None = None
    """The 1-based line of the field in a submitted YAML/JSON text, when known."""


class GentuneError(Exception):
    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFound(GentuneError):
    status_code = 404


class Conflict(GentuneError):
    status_code = 409


class Unauthorized(GentuneError):
    status_code = 401


class Forbidden(GentuneError):
    status_code = 403


class UnsupportedMediaType(GentuneError):
    status_code = 415


class TooManyRequests(GentuneError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(GentuneError):
    status_code = 503


class InvalidInput(GentuneError):
    """Input that parsed but does not make sense; carries one error per offending field."""

    status_code = 422

    def __init__(self, errors: list[FieldError]) -> None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"Invalid study definition. {summary}{more}")
        self.errors = errors


_FRIENDLY = {
    "extra_forbidden": "is not a known field; check its spelling",
    "missing": "is required",
    "union_tag_not_found": "needs a 'type'; see the study-definition reference for the types",
}


def field_errors_from_pydantic(
    errors: Sequence[Mapping[str, Any]], body: Any = None, prefix: Sequence[str | int] = ()
) -> list[FieldError]:
    """Turn pydantic's errors into ``FieldError``s with dotted paths a person can follow.

    Discriminated unions put their tag (``float``, ``median``) into the error location;
    walking the submitted ``body`` alongside drops those parts so that the path names the
    field as written (``search_space.lr_g.low``, not ``search_space.lr_g.float.low``).
    """
    result = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        if error.get("type") == "json_invalid":
            detail = error.get("ctx", {}).get("error", "")
            result.append(
                FieldError(
                    "body", f"is not valid JSON ({detail}) near character {loc[-1] if loc else '?'}"
                )
            )
            continue
        path = _path_in_body(loc, body, error.get("type") == "missing") if body is not None else loc
        field = ".".join(str(p) for p in [*prefix, *path]) or "body"
        result.append(FieldError(field, _message(error)))
    return result


def _path_in_body(loc: list[Any], body: Any, missing: bool) -> list[Any]:
    path: list[Any] = []
    node = body
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif (last and missing) or not isinstance(node, dict | list):
            path.append(part)
        # else: a union tag or validator name that is not part of the submitted document
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"type {ctx.get('tag')} is not one of {ctx.get('expected_tags')}"
    if kind in _FRIENDLY:
        return _FRIENDLY[kind]
    message = str(error.get("msg", "is not valid"))
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    return message
