"""Riding out a database that is briefly unreachable: a restart, a failover, a locked SQLite.

The worker side (study runs, their Tune callbacks, the queue poller) retries each unit of work
until the database answers again or ``db_patience_s`` runs out. A unit is one transaction or
one Optuna storage call, rolled back whole when the connection drops, so the retry starts
clean. The API does not wait: it answers 503 and the client retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gentune.service.config import get_settings
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope

log = logging.getLogger("gentune.db")
T = TypeVar("T")
SQLITE_TRANSIENT = ("database is locked", "database is busy")


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (worth waiting out), as
    opposed to a query it refused (a bug or bad data, never retried)."""
    if isinstance(error, StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__  # Optuna wraps SQLAlchemy's errors
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    if type(error.orig).__module__.startswith("sqlite3"):
        return any(text in str(error.orig).lower() for text in SQLITE_TRANSIENT)
    return True  # a server's driver raises these for lost or refused connections


def retrying(work: Callable[[], T], what: str, patience_s: float | None = None) -> T:
    """``work()``, tried again while the database is unreachable, for up to ``patience_s``
    (default: the ``db_patience_s`` setting)."""
    patience = get_settings().db_patience_s if patience_s is None else patience_s
    deadline = time.monotonic() + patience
    delay = 0.25
    tries = 0
    while True:
        try:
            result = work()
        except Exception as error:
            if not is_transient(error) or time.monotonic() + delay > deadline:
                raise
            tries += 1
            if tries == 1:
                log.warning(
                    "database unreachable while %s; retrying for up to %.0f s (%s)",
                    what,
                    patience,
                    first_line(error),
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if tries:
            log.warning("database back after %d retries while %s", tries, what)
        return result


def transact(
    url: str, work: Callable[[Repository], T], what: str, patience_s: float | None = None
) -> T:
    """``work`` in one transaction, the whole transaction retried while the database is
    unreachable."""

    def attempt() -> T:
        with session_scope(url) as session:
            return work(Repository(session))

    return retrying(attempt, what, patience_s)


def first_line(error: BaseException) -> str:
    """The driver's own message, for logs (Optuna's wrapper says only that a commit failed)."""
    if isinstance(error, StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
