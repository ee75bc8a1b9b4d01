"""The commands that start gentune's processes: ``serve`` (the API, and a worker beside it),
``worker`` alone, and ``migrate``."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from typing import Annotated, Any

import typer

from gentune.service.cli.render import console
from gentune.service.config import Settings, get_settings
from gentune.service.db.session import redacted

WORKER_STOP_TIMEOUT_S = 90


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option(help="Also run a worker (the one-command default).")
    ] = True,
) -> None:
    """Run the REST API, and by default a worker beside it."""
    import uvicorn

    from gentune.service.app import create_app
    from gentune.service.auth import TokenFileError
    from gentune.service.db.session import migrate

    _log_to_stderr()
    settings = get_settings()
    try:
        api = create_app(settings, run_migrations=False)
    except TokenFileError as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None
    migrate(settings.database_url)
    _bind_artifact_store(settings)
    worker_process = _start_worker() if worker else None
    console.print(
        f"gentune: API on http://{host}:{port} (docs at /docs), database "
        f"{redacted(settings.database_url)}, artifacts in {settings.artifact_dir}"
    )
    if not api.state.tokens.enabled:
        _warn_if_open(host, port)
    try:
        uvicorn.run(api, host=host, port=port, log_level="info")
    finally:
        if worker_process is not None:
            _stop_worker(worker_process)


def _start_worker() -> subprocess.Popen[bytes]:
    """``gentune worker`` in a process of its own, killed by the kernel if this one dies."""
    from gentune.service.scheduling.worker import die_with_parent

    return subprocess.Popen(
        [sys.executable, "-m", "gentune.service.cli", "worker"], preexec_fn=die_with_parent
    )


def _stop_worker(worker_process: subprocess.Popen[bytes]) -> None:
    """Ask the worker to stop (it ends its studies' trials); kill it if it takes too long."""
    worker_process.send_signal(signal.SIGTERM)
    try:
        worker_process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker_process.kill()


def _warn_if_open(host: str, port: int) -> None:
    """Warn of an API without a token on an interface others can reach."""
    from gentune.service.auth import LOOPBACK_HOSTS, host_name

    if host_name(host) in LOOPBACK_HOSTS:
        return
    logging.getLogger("gentune").warning(
        "serving on %s with no token: anyone who can reach port %d can submit and cancel "
        "studies; set GENTUNE_API_TOKEN (or GENTUNE_API_TOKENS_FILE)",
        host,
        port,
    )


def worker() -> None:
    """Run a worker alone: claim queued studies and run them on Ray (scale out with more)."""
    from gentune.service.artifacts import StoreOfAnotherDatabase
    from gentune.service.scheduling.worker import Worker

    _log_to_stderr()
    the_worker = Worker(get_settings())

    def stop(_signum: int, _frame: Any) -> None:
        the_worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        the_worker.run()
    except StoreOfAnotherDatabase as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None


def migrate() -> None:
    """Create or upgrade gentune's tables in GENTUNE_DATABASE_URL."""
    from gentune.service.db.session import migrate as run_migrations

    settings = get_settings()
    run_migrations(settings.database_url)
    console.print(f"database {redacted(settings.database_url)} is up to date")


def _bind_artifact_store(settings: Settings) -> None:
    """Bind the artifact store to the database, or exit 2 saying what to set."""
    from gentune.service.artifacts import StoreOfAnotherDatabase
    from gentune.service.scheduling.worker import bind_artifact_store

    try:
        bind_artifact_store(settings)
    except StoreOfAnotherDatabase as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
