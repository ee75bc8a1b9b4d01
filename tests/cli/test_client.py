"""``Client``, the Python client of the API, against the real app served by uvicorn on a real
database: the token on every call (downloads too), the API's errors typed with their field
errors, and a service that cannot answer."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch
from pydantic import SecretStr

from gentune.service.artifacts import ArtifactStore, artifact_path
from gentune.service.client import ApiError, Client, ServiceUnreachable
from gentune.service.db.models import TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from gentune.service.errors import FieldError
from tests.support.records import add_trial, start_study
from tests.support.servers import ApiServer, api_server, free_port
from tests.support.specs import BAD_DEFINITION, ring_spec

TOKEN = "client-s3cret"


@pytest.fixture(scope="module")
def guarded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A service with a token that protects its reads too (``GENTUNE_PROTECT_READS``)."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    with api_server(
        database_url, artifacts, api_token=SecretStr(TOKEN), protect_reads=True
    ) as served:
        yield served


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENTUNE_API_TOKEN", raising=False)


def trial_with_checkpoint(server: ApiServer) -> tuple[int, dict[str, object]]:
    """A completed trial of a new study, with a best checkpoint in the service's store."""
    settings = server.settings
    study = Client(server.url, TOKEN).post("/studies", json=ring_spec(name="client-download"))
    start_study(settings, study["id"])
    trial_id = add_trial(settings, study["id"], 0, [0.5], TrialState.completed)
    checkpoint = {"model": {"w": torch.arange(4.0)}, "step": 1}
    relative = artifact_path(study["id"], trial_id, "best")
    size = ArtifactStore(settings.artifact_dir).save_checkpoint(relative, checkpoint)
    with session_scope(settings.database_url) as session:
        Repository(session).upsert_artifact(trial_id, "best", relative, 1, size)
    return study["id"], checkpoint


def test_the_token_goes_on_gets_and_posts(guarded: ApiServer) -> None:
    anonymous = Client(guarded.url)
    definition = ring_spec(name="client-anonymous")
    for method, call in (
        ("GET", lambda: anonymous.get("/studies")),
        ("POST", lambda: anonymous.post("/studies", json=definition)),
    ):
        with pytest.raises(ApiError) as refused:
            call()
        words = guarded.api(method, "/studies", json=definition).json()["detail"]
        assert refused.value.status_code == 401 and not refused.value.transient
        assert refused.value.detail == words

    client = Client(guarded.url, TOKEN)
    study = client.post("/studies", json=ring_spec(name="client-posted"))
    assert study["name"] == "client-posted" and study["state"] == "queued"
    # A param set to None is left out of the query rather than sent as "None".
    listed = client.get("/studies", limit=500, state=None)
    assert study["id"] in [s["id"] for s in listed["data"]]
    assert client.get(f"/studies/{study['id']}")["name"] == "client-posted"


def test_the_token_comes_from_the_environment_when_not_given(
    guarded: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENTUNE_API_TOKEN", TOKEN)
    assert Client(guarded.url).get("/studies", limit=1)["count"] >= 0


def test_the_token_goes_on_downloads_of_a_path_or_of_a_url_the_api_gave(
    guarded: ApiServer,
) -> None:
    study_id, checkpoint = trial_with_checkpoint(guarded)
    client = Client(guarded.url, TOKEN)
    best = client.get(f"/studies/{study_id}/best")
    by_url = client.download(best["checkpoint_url"])
    by_path = client.download(f"/trials/{best['trial_id']}/checkpoint", kind="best")
    assert by_url == by_path
    loaded = torch.load(io.BytesIO(by_url), weights_only=True)
    assert loaded["step"] == checkpoint["step"]
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))

    with pytest.raises(ApiError) as refused:
        Client(guarded.url).download(best["checkpoint_url"])
    assert refused.value.status_code == 401


def test_a_refused_definition_carries_the_apis_field_errors_with_their_lines(
    guarded: ApiServer,
) -> None:
    client = Client(guarded.url, TOKEN)
    with pytest.raises(ApiError) as refused:
        client.post(
            "/studies/yaml",
            content=BAD_DEFINITION.encode(),
            headers={"Content-Type": "application/yaml"},
        )
    error = refused.value
    answer = guarded.api(
        "POST",
        "/studies/yaml",
        content=BAD_DEFINITION,
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert error.status_code == 422 and error.detail == answer["detail"]
    assert error.errors == tuple(
        FieldError(e["field"], e["message"], e["line"]) for e in answer["errors"]
    )
    assert {(e.line, e.field.split(".")[0]) for e in error.errors} >= {
        (9, "search_space"),
        (14, "budget"),
    }
    assert str(error) == f"422: {answer['detail']}"


def test_a_missing_resource_is_an_error_in_the_apis_words(guarded: ApiServer) -> None:
    with pytest.raises(ApiError) as missing:
        Client(guarded.url, TOKEN).get("/studies/987654")
    assert (missing.value.status_code, missing.value.detail) == (
        404,
        "Study 987654 does not exist.",
    )
    assert missing.value.errors == () and not missing.value.transient


def test_an_unreachable_service_is_a_transient_error_naming_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnreachable) as unreachable:
        Client(url + "/").get("/studies")
    error = unreachable.value
    assert isinstance(error, ApiError) and error.status_code is None and error.transient
    assert error.url == url and str(error)


def test_a_service_that_does_not_answer_in_time_is_unreachable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServiceUnreachable) as late:
            Client(url, timeout=0.2).get("/studies")
    assert late.value.transient and "timed out" in str(late.value)


class _LostProxy(BaseHTTPRequestHandler):
    """What a proxy in front of a restarting service answers: 502 and a page of HTML."""

    def do_GET(self) -> None:
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the client's error, not the proxy's log."""


@pytest.fixture
def lost_proxy() -> Iterator[str]:
    proxy = HTTPServer(("127.0.0.1", 0), _LostProxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()


def test_a_gateway_error_is_transient_and_keeps_the_text_of_its_page(lost_proxy: str) -> None:
    client = Client(lost_proxy)
    for call in (lambda: client.get("/studies"), lambda: client.download("/studies/1/export")):
        with pytest.raises(ApiError) as lost:
            call()
        assert lost.value.status_code == 502 and lost.value.transient
        assert lost.value.detail == "<html><body>502 Bad Gateway</body></html>"
        assert not isinstance(lost.value, ServiceUnreachable)
