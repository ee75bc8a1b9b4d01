"""A real gentune service (API + worker + local Ray) in a subprocess, on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import new_database_url
from tests.support.servers import Service, free_port, service_env, start, stop


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("service")
    database_url, cleanup = new_database_url(home)
    port = free_port()
    env = service_env(database_url, home / "artifacts")
    log_path = home / "service.log"
    process = start(["serve", "--port", str(port)], env, log_path)
    svc = Service(f"http://127.0.0.1:{port}", database_url, home / "artifacts", env, log_path)

    try:
        svc.wait_until_up()
        yield svc
    finally:
        stop(process)
        cleanup()  # type: ignore[operator]
