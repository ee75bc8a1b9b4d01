"""The REST API against a real database (SQLite, or Postgres with GENTUNE_TEST_DATABASE_URL)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from pydantic import SecretStr

from gentune.service.app import create_app
from gentune.service.config import Settings
from gentune.service.schemas.study import DEFAULT_SAMPLER
from tests.support.servers import LOCAL
from tests.support.specs import ring_spec


def test_submit_then_read_back(client: TestClient) -> None:
    response = client.post("/api/v1/studies", json=ring_spec(name="readback"))
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["state"] == "queued"
    assert study["trial_counts"] == {
        "pending": 0,
        "running": 0,
        "completed": 0,
        "pruned": 0,
        "failed": 0,
    }
    assert study["best"] is None
    assert study["optuna_study_name"] == f"gentune-{study['id']}"
    assert study["url"].endswith(f"/api/v1/studies/{study['id']}")
    again = client.get(f"/api/v1/studies/{study['id']}").json()
    assert again["definition"]["search_space"]["lr_g"]["log"] is True
    assert again["definition"]["sampler"] == {
        "type": "tpe",
        "seed": 0,
        "n_startup_trials": 10,
        "multivariate": True,
        "constant_liar": True,
        "local_share": 0.0,
        "local_scale": 0.2,
    }
    listed = client.get("/api/v1/studies", params={"state": "queued"}).json()
    assert study["id"] in [s["id"] for s in listed["data"]]


def test_a_definition_without_a_sampler_stores_gentunes_default(client: TestClient) -> None:
    spec = ring_spec(name="default-sampler")
    del spec["sampler"]
    response = client.post("/api/v1/studies", json=spec)
    assert response.status_code == 201, response.text
    sampler = response.json()["definition"]["sampler"]
    assert sampler == {
        **DEFAULT_SAMPLER,
        "seed": None,
        "multivariate": True,
        "constant_liar": True,
        "local_share": 0.0,
        "local_scale": 0.2,
    }
    assert sampler["n_startup_trials"] == 4


def test_list_is_paged(client: TestClient) -> None:
    ids = [
        client.post("/api/v1/studies", json=ring_spec(name=f"page-{i}")).json()["id"]
        for i in range(3)
    ]
    page = client.get("/api/v1/studies", params={"limit": 2}).json()
    assert len(page["data"]) == 2 and page["count"] >= 3
    assert page["data"][0]["id"] == ids[-1], "newest first"
    rest = client.get("/api/v1/studies", params={"limit": 2, "offset": 1}).json()
    assert rest["data"][0]["id"] == page["data"][1]["id"]
    assert client.get("/api/v1/studies", params={"limit": 0}).status_code == 422


def test_unknown_ids_are_404_with_a_message(client: TestClient) -> None:
    for path in (
        "/api/v1/studies/999999",
        "/api/v1/studies/999999/trials",
        "/api/v1/studies/999999/best",
        "/api/v1/trials/999999",
        "/api/v1/trials/999999/checkpoint",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "does not exist" in response.json()["detail"]
    assert client.post("/api/v1/studies/999999/cancel").status_code == 404


def test_best_of_a_study_without_trials_is_404(client: TestClient) -> None:
    study = client.post("/api/v1/studies", json=ring_spec()).json()
    response = client.get(f"/api/v1/studies/{study['id']}/best")
    assert response.status_code == 404
    assert "no completed trial yet" in response.json()["detail"]


def test_cancel_a_queued_study_then_again(client: TestClient) -> None:
    study = client.post("/api/v1/studies", json=ring_spec()).json()
    cancelled = client.post(f"/api/v1/studies/{study['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/studies/{study['id']}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_trainers_lists_schema_and_metrics(client: TestClient) -> None:
    body = client.get("/api/v1/trainers").json()
    gan2d = next(t for t in body["data"] if t["name"] == "gan2d")
    assert "lr_g" in gan2d["params_schema"]["properties"]
    metrics = {m["name"]: m for m in gan2d["metrics"]}
    assert {"modes", "hq_fraction", "mode_kl", "frechet", "g_loss", "d_loss"} <= set(metrics)
    assert metrics["hq_fraction"]["direction"] == "maximize"


def test_health_checks_the_database(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["database"] == "ok"


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/studies",
        "/api/v1/studies/{study_id}",
        "/api/v1/studies/{study_id}/cancel",
        "/api/v1/studies/{study_id}/trials",
        "/api/v1/studies/{study_id}/best",
        "/api/v1/trials/{trial_id}",
        "/api/v1/trials/{trial_id}/checkpoint",
        "/api/v1/trainers",
        "/api/v1/health",
    ):
        assert path in paths


def test_token_guards_mutating_endpoints_only(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(base_url=LOCAL, app=create_app(guarded)) as client:
        assert client.post("/api/v1/studies", json=ring_spec()).status_code == 401
        wrong = client.post(
            "/api/v1/studies", json=ring_spec(), headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert "does not accept this token" in wrong.json()["detail"]
        assert client.post("/api/v1/studies", json=ring_spec()).headers["WWW-Authenticate"]
        ok = client.post(
            "/api/v1/studies", json=ring_spec(), headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status_code == 201
        study_id = ok.json()["id"]
        assert client.post(f"/api/v1/studies/{study_id}/cancel").status_code == 401
        assert client.get(f"/api/v1/studies/{study_id}").status_code == 200


def test_the_openapi_document_resolves_and_405s_name_every_method(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    missing = sorted(set(refs) - set(document["components"]["schemas"]))
    assert refs and not missing, f"$refs to schemas the document lacks: {missing}"
    yaml_body = document["paths"]["/api/v1/studies/yaml"]["post"]["requestBody"]["content"]
    assert set(yaml_body) == {"application/yaml", "application/json"}

    for method, path, allowed in (
        ("PUT", "/api/v1/studies", "GET, POST"),
        ("DELETE", "/api/v1/studies/1", "GET"),
        ("GET", "/api/v1/studies/yaml", "POST"),  # not a study whose id is "yaml"
        ("PATCH", "/api/v1/studies/yaml", "POST"),
        ("GET", "/api/v1/trials/1/ratings", None),  # allowed: no 405
        ("PUT", "/api/v1/trials/1/ratings", "GET, POST"),
    ):
        answer = client.request(method, path)
        if allowed is None:
            assert answer.status_code != 405, (method, path)
            continue
        assert answer.status_code == 405, (method, path, answer.status_code)
        assert answer.headers["allow"] == allowed, (method, path)
        assert (
            f"{method} is not allowed on this path; it takes {allowed}."
            == (answer.json()["detail"])
        )
    for path in ("/api/v1/studies/abc", "/api/v1/studies/-1/trials", "/api/v1/trials/x"):
        answer = client.delete(path)
        assert answer.status_code == 404, path
        assert f"Nothing is at {path}" in answer.json()["detail"]


def test_a_study_without_a_time_budget_gets_the_default_one(settings: Settings) -> None:
    """No study runs (and writes metrics and grids) for ever unless an operator says so."""
    for default, given, stored in (
        (7 * 24 * 3600.0, None, 7 * 24 * 3600.0),
        (7 * 24 * 3600.0, 60.0, 60.0),
        (0.0, None, None),
    ):
        configured = settings.model_copy(update={"default_timeout_s": default})
        spec = ring_spec()
        if given is not None:
            spec["budget"] = {**spec["budget"], "timeout_s": given}  # type: ignore[dict-item]
        with TestClient(base_url=LOCAL, app=create_app(configured)) as client:
            made = client.post("/api/v1/studies", json=spec)
            assert made.status_code == 201, made.text
            assert made.json()["definition"]["budget"]["timeout_s"] == stored, (default, given)
