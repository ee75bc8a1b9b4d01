"""Tokens: named tokens from a file, protected reads, the dashboard's cookie login and CSRF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gentune.service.app import create_app
from gentune.service.auth import CSRF_COOKIE, MAX_TOKEN_LENGTH, TOKEN_COOKIE, TokenFileError
from gentune.service.config import Settings
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from tests.support.servers import LOCAL, ApiServer, run_gentune
from tests.support.specs import ring_spec

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"


def _named_client(settings: Settings, tokens_file: str) -> TestClient:
    """A client of the app with the named tokens of ``tokens_file``."""
    app = create_app(settings.model_copy(update={"api_tokens_file": tokens_file}))
    return TestClient(base_url=LOCAL, app=app)


def _token_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_studies_record_which_named_token_submitted_and_cancelled_them(
    settings: Settings, tmp_path: Path
) -> None:
    tokens = _token_file(tmp_path, f"alice: {ALICE}\nbob: {BOB}\n")
    with _named_client(settings, tokens) as client:
        made = client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(ALICE))
        assert made.status_code == 201, made.text
        assert made.json()["submitted_by"] == "alice"
        study_id = made.json()["id"]
        cancelled = client.post(f"/api/v1/studies/{study_id}/cancel", headers=_bearer(BOB))
        assert cancelled.json()["cancelled_by"] == "bob"
        assert client.get(f"/api/v1/studies/{study_id}").json()["submitted_by"] == "alice"


def test_ratings_record_the_named_token_and_need_one(settings: Settings, tmp_path: Path) -> None:
    tokens = _token_file(tmp_path, f"alice: {ALICE}\nbob: {BOB}\n")
    with _named_client(settings, tokens) as client:
        study_id = client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(ALICE)).json()[
            "id"
        ]
        with session_scope(settings.database_url) as session:
            trial_id = Repository(session).create_trial(study_id, 0, {"lr_g": 0.001}, None).id
            session.commit()
        url = f"/api/v1/trials/{trial_id}/ratings"
        assert client.post(url, json={"score": 5}).status_code == 401
        rated = client.post(url, json={"score": 5}, headers=_bearer(BOB))
        assert rated.status_code == 201 and rated.json()["rater"] == "bob"
        assert client.get(url).json()["data"][0]["rater"] == "bob"


def test_a_token_removed_from_the_file_stops_working_without_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    tokens = _token_file(tmp_path, f"alice: {ALICE}\nbob: {BOB}\n")
    with _named_client(settings, tokens) as client:
        assert client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(BOB)).is_success
        Path(tokens).write_text(f"alice: {ALICE}\n")
        os.utime(tokens, ns=(1, 1))  # a new mtime even within the clock's resolution
        refused = client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(BOB))
        assert refused.status_code == 401
        Path(tokens).write_text("alice: [not, a, token")  # half-saved: the last good set stays
        os.utime(tokens, ns=(2, 2))
        assert client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(ALICE)).is_success


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- just a list", "mapping of names to tokens"),
        ("alice: short", "16 to 512 characters"),
        (f"'bad name!': {ALICE}", "letters, digits"),
        (f"alice: {ALICE}\nbob: {ALICE}\n", "shares its token"),
        ("alice: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_token_file_stops_the_start_with_what_is_wrong(
    settings: Settings, tmp_path: Path, text: str, says: str
) -> None:
    tokens = _token_file(tmp_path, text)
    with pytest.raises(TokenFileError, match=says):
        create_app(settings.model_copy(update={"api_tokens_file": tokens}))
    with pytest.raises(TokenFileError, match="No such file"):
        create_app(settings.model_copy(update={"api_tokens_file": str(tmp_path / "none")}))


def test_protected_reads_need_a_token_everywhere_but_health_and_login(
    settings: Settings,
) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE), "protect_reads": True})
    with TestClient(base_url=LOCAL, app=create_app(guarded), follow_redirects=False) as client:
        for path in (
            "/api/v1/studies",
            "/api/v1/trainers",
            "/api/v1/trials/1",
            "/metrics",
            "/optuna/api/studies",
        ):
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["WWW-Authenticate"].startswith("Bearer"), path
            assert client.get(path, headers=_bearer(ALICE)).status_code in (200, 404), path
        page = client.get("/studies/3?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fstudies%2F3"
        optuna_page = client.get("/optuna/dashboard", headers={"Accept": "text/html"})
        assert optuna_page.status_code == 303
        for path in ("/api/v1/health", "/login", "/assets/login.js", "/api/v1/session"):
            assert client.get(path).status_code == 200, path


def test_reads_stay_open_unless_protected(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE)})
    with TestClient(base_url=LOCAL, app=create_app(guarded)) as client:
        assert client.get("/api/v1/studies").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/session").json() == {
            "auth": True,
            "protect_reads": False,
            "name": None,
        }


def test_dashboard_login_keeps_the_token_in_an_httponly_strict_cookie_and_needs_csrf(
    settings: Settings,
) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE), "protect_reads": True})
    with TestClient(base_url=LOCAL, app=create_app(guarded), follow_redirects=False) as client:
        wrong = client.post("/api/v1/session", json={"token": "nope"})
        assert wrong.status_code == 401
        assert TOKEN_COOKIE not in client.cookies

        login = client.post("/api/v1/session", json={"token": ALICE})
        assert login.status_code == 200, login.text
        assert login.json() == {"auth": True, "protect_reads": True, "name": "default"}
        set_cookies = login.headers.get_list("set-cookie")
        token_cookie = next(c for c in set_cookies if c.startswith(TOKEN_COOKIE))
        csrf_cookie = next(c for c in set_cookies if c.startswith(CSRF_COOKIE))
        assert "HttpOnly" in token_cookie and "SameSite=strict" in token_cookie
        assert "HttpOnly" not in csrf_cookie and "SameSite=strict" in csrf_cookie

        # Reads and pages with the cookie alone.
        assert client.get("/api/v1/studies").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/session").json()["name"] == "default"

        before = client.get("/api/v1/studies").json()["count"]
        # A change with the cookie but no CSRF header, as a form on another site would send.
        forged = client.post("/api/v1/studies", json=ring_spec())
        assert forged.status_code == 403
        assert "CSRF" in forged.json()["detail"]
        csrf = {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}
        wrong_origin = client.post(
            "/api/v1/studies",
            json=ring_spec(),
            headers={**csrf, "Origin": "https://evil.example"},
        )
        assert wrong_origin.status_code == 403
        made = client.post("/api/v1/studies", json=ring_spec(), headers={**csrf, "Origin": LOCAL})
        assert made.status_code == 201, made.text
        assert made.json()["submitted_by"] == "default"
        count = client.get("/api/v1/studies").json()["count"]
        assert count == before + 1, "the refused changes stored nothing"

        assert client.delete("/api/v1/session").status_code == 204
        client.cookies.clear()  # what the browser does with the expired cookies
        assert client.get("/api/v1/studies").status_code == 401


def test_logins_are_throttled_after_repeated_failures(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE)})
    with TestClient(base_url=LOCAL, app=create_app(guarded)) as client:
        answers = [
            client.post("/api/v1/session", json={"token": f"guess-{i}"}).status_code
            for i in range(11)
        ]
        assert answers == [401] * 10 + [429]
        limited = client.post("/api/v1/session", json={"token": ALICE})
        assert limited.status_code == 429, "even the right token waits out the lockout"
        assert int(limited.headers["Retry-After"]) > 0


def test_login_without_tokens_says_there_is_none(client: TestClient) -> None:
    answer = client.post("/api/v1/session", json={"token": ALICE})
    assert answer.status_code == 409
    assert "no tokens" in answer.json()["detail"]


# --- pages of other sites, with no token set (the default for `make run`) ---------------------


def _study_count(client: TestClient) -> int:
    return int(client.get("/api/v1/studies").json()["count"])


def test_without_tokens_a_page_of_another_site_changes_nothing(client: TestClient) -> None:
    """No token is set, so any caller may change studies; a page on another site open in a
    teammate's browser must still not: its browser names the page in Origin."""
    study_id = client.post("/api/v1/studies", json=ring_spec()).json()["id"]
    before = _study_count(client)
    text = yaml.safe_dump(ring_spec(name="from-evil"))
    evil = {"Origin": "http://evil.example"}

    # text/plain is what a form or fetch on another site sends without a preflight.
    plain = client.post(
        "/api/v1/studies/yaml", content=text, headers={**evil, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 415, plain.text
    assert "Content-Type: application/yaml" in plain.json()["detail"]
    form = client.post(
        "/api/v1/studies/yaml",
        content=text,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415, "a form's type is refused even without an Origin"
    for origin in ("http://evil.example", "null", "http://localhost.evil.example"):
        for response in (
            client.post(
                "/api/v1/studies/yaml",
                content=text,
                headers={"Origin": origin, "Content-Type": "application/yaml"},
            ),
            client.post("/api/v1/studies", json=ring_spec(), headers={"Origin": origin}),
            client.post(f"/api/v1/studies/{study_id}/cancel", headers={"Origin": origin}),
        ):
            assert response.status_code == 403, (origin, response.text)
            assert f"Changes from pages of {origin} are refused" in response.json()["detail"]
    assert _study_count(client) == before, "the refused changes stored nothing"
    assert client.get(f"/api/v1/studies/{study_id}").json()["state"] == "queued"

    # The service's own pages, scripts and the CLI (no Origin) go on working.
    own = client.post(
        "/api/v1/studies/yaml",
        content=text,
        headers={"Origin": LOCAL, "Content-Type": "application/yaml; charset=utf-8"},
    )
    assert own.status_code == 201, own.text
    assert client.post("/api/v1/studies", json=ring_spec()).status_code == 201
    cancelled = client.post(f"/api/v1/studies/{study_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text


def test_only_trusted_host_names_are_answered_against_dns_rebinding(settings: Settings) -> None:
    """A page at evil.example that re-points its name at the service reaches it with Host
    evil.example, its own origin: same-origin to the browser, so only the Host tells."""
    with TestClient(base_url="http://evil.example:8000", app=create_app(settings)) as rebound:
        for path in ("/api/v1/studies", "/", "/optuna/", "/metrics", "/docs"):
            refused = rebound.get(path)
            assert refused.status_code == 400, path
            assert "GENTUNE_TRUSTED_HOSTS" in refused.json()["detail"]
        made = rebound.post(
            "/api/v1/studies", json=ring_spec(), headers={"Origin": "http://evil.example:8000"}
        )
        assert made.status_code == 400
        assert rebound.get("/api/v1/health").status_code == 200, "probes call by address"
    for url in ("http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000"):
        with TestClient(base_url=url, app=create_app(settings)) as local:
            assert local.get("/api/v1/studies").status_code == 200, url

    named = settings.model_copy(
        update={
            "trusted_hosts": "gentune.lan, *.corp.example",
            "public_url": "https://tune.example.com",
        }
    )
    for url, status in (
        ("http://gentune.lan:8000", 200),
        ("http://a.corp.example", 200),
        ("https://tune.example.com", 200),
        ("http://corp.example", 400),
        ("http://localhost", 400),  # the list replaces the default
    ):
        with TestClient(base_url=url, app=create_app(named)) as other:
            assert other.get("/api/v1/studies").status_code == status, url
    anything = settings.model_copy(update={"trusted_hosts": "*"})
    with TestClient(base_url="http://evil.example", app=create_app(anything)) as other:
        assert other.get("/api/v1/studies").status_code == 200


def test_serving_off_loopback_without_a_token_warns(settings: Settings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GENTUNE_DATABASE_URL": settings.database_url,
        "GENTUNE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    env.pop("GENTUNE_API_TOKEN", None)
    env.pop("GENTUNE_API_TOKENS_FILE", None)
    command = ["serve", "--no-worker", "--port", "0"]
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        _, text = run_gentune([*command, "--host", host], env, tmp_path, until="startup complete")
        assert "Application startup complete" in text, text
        assert ("with no token: anyone who can reach port" in text) is warned, text


# --- tokens: exact length, and wrong ones throttled by address ----------------------------


def test_a_right_token_with_anything_after_it_is_wrong(settings: Settings) -> None:
    longest = "t" * MAX_TOKEN_LENGTH
    guarded = settings.model_copy(update={"api_token": SecretStr(longest)})
    with TestClient(base_url=LOCAL, app=create_app(guarded)) as client:
        for extra in ("x", "t", "t" * 1000):
            refused = client.post(
                "/api/v1/studies", json=ring_spec(), headers=_bearer(longest + extra)
            )
            assert refused.status_code == 401, extra
        login = client.post("/api/v1/session", json={"token": longest + "x"})
        assert login.status_code == 422, "a login longer than any token is refused as such"
        made = client.post("/api/v1/studies", json=ring_spec(), headers=_bearer(longest))
        assert made.status_code == 201, made.text


def test_wrong_bearer_tokens_are_throttled_per_address(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE), "protect_reads": True})
    app = create_app(guarded)
    with (
        TestClient(base_url=LOCAL, app=app, client=("10.0.0.1", 5000)) as guesser,
        TestClient(base_url=LOCAL, app=app, client=("10.0.0.2", 5000)) as colleague,
    ):
        answers = [
            guesser.get(
                "/api/v1/studies", headers=_bearer(f"guess-{i:02d}-0123456789abcdef")
            ).status_code
            for i in range(11)
        ]
        assert answers == [401] * 10 + [429]
        locked = guesser.post("/api/v1/studies", json=ring_spec(), headers=_bearer(ALICE))
        assert locked.status_code == 429, "even the right token waits out the lockout"
        assert int(locked.headers["Retry-After"]) > 0
        assert "Too many wrong tokens" in locked.json()["detail"]
        assert guesser.get("/optuna/api/studies", headers=_bearer(ALICE)).status_code == 429
        # Another address is not locked out by the guesser.
        assert colleague.get("/api/v1/studies", headers=_bearer(ALICE)).status_code == 200
        made = colleague.post("/api/v1/studies", json=ring_spec(), headers=_bearer(ALICE))
        assert made.status_code == 201, made.text


def test_behind_a_proxy_each_forwarded_client_has_its_own_lockout(settings: Settings) -> None:
    """The real server (uvicorn) behind a proxy on 127.0.0.1 that forwards the client's address
    in X-Forwarded-For, as the README's nginx and Caddy snippets do: one client's wrong tokens
    lock out that client, not everyone who comes through the proxy."""
    guarded = settings.model_copy(update={"api_token": SecretStr(ALICE)})
    server = ApiServer(guarded)
    server.start()
    try:

        def post(client: str, token: str) -> int:
            return server.api(
                "POST",
                "/studies",
                json=ring_spec(),
                headers={**_bearer(token), "X-Forwarded-For": client},
            ).status_code

        assert [post("203.0.113.7", f"wrong-{i:02d}-0123456789abcdef") for i in range(11)] == (
            [401] * 10 + [429]
        )
        assert post("203.0.113.7", ALICE) == 429
        assert post("198.51.100.4", ALICE) == 201
    finally:
        server.stop()
