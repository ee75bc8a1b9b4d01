"""The dashboard's files and the optuna-dashboard mount, over HTTP on a real database
(the pages themselves run in a browser in tests/e2e/test_dashboard.py)."""

from __future__ import annotations

import optuna
import pytest
from fastapi.testclient import TestClient

from gentune.service.config import Settings


@pytest.mark.parametrize("path", ["/", "/studies/1", "/trials/7"])
def test_pages_are_html_with_a_content_security_policy(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy
    assert "<script" in response.text and "https://" not in response.text  # nothing from a CDN


def test_assets_come_gzipped_with_etags(client: TestClient) -> None:
    plain = client.get("/assets/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and b"plotly" in plain.content[:2000].lower()
    assert plain.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    zipped = client.get("/assets/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2
    assert zipped.content == plain.content  # httpx undoes the gzip
    again = client.get("/assets/plotly.min.js", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("name", ["nope.js", "..%2F..%2Fapp.py", ".env", "gentune.js%00.png"])
def test_assets_outside_the_dashboard_folder_are_refused(client: TestClient, name: str) -> None:
    response = client.get(f"/assets/{name}")
    assert response.status_code in (404, 422), response.text
    assert "detail" in response.json()


def test_optuna_dashboard_is_mounted_read_only_on_the_same_storage(
    client: TestClient, settings: Settings
) -> None:
    storage = optuna.storages.RDBStorage(settings.database_url)
    optuna.create_study(study_name="gentune-mounted", storage=storage).optimize(
        lambda trial: trial.suggest_float("x", 0, 1), n_trials=2
    )
    home = client.get("/optuna/", follow_redirects=False)
    assert home.status_code == 302 and home.headers["location"] == "/optuna/dashboard"
    page = client.get("/optuna/dashboard")
    assert page.status_code == 200 and 'src="/optuna/static/bundle.js"' in page.text
    bundle = client.get("/optuna/static/bundle.js", headers={"Accept-Encoding": "identity"})
    assert '("/optuna")' in bundle.text and 'url_prefix:"/optuna/dashboard"' in bundle.text
    studies = client.get("/optuna/api/studies").json()["study_summaries"]
    assert "gentune-mounted" in [s["study_name"] for s in studies]
    by_name = client.get("/optuna/by-name/gentune-mounted", follow_redirects=False)
    study_id = storage.get_study_id_from_name("gentune-mounted")
    assert by_name.headers["location"] == f"/optuna/dashboard/studies/{study_id}"
    assert client.get("/optuna/by-name/gentune-none").status_code == 404
    refused = client.post("/optuna/api/studies", json={"study_name": "x", "directions": []})
    assert refused.status_code == 403 and "read-only" in refused.json()["reason"]
    deleted = client.delete(f"/optuna/api/studies/{studies[0]['study_id']}")
    assert deleted.status_code == 403


def test_optuna_mount_answers_without_accept_encoding_and_serves_no_formula_csv(
    client: TestClient, settings: Settings
) -> None:
    """Clients that send no Accept-Encoding (curl, probes) get the files, not a 500; the CSV
    download, which would put a param a spreadsheet runs as a formula into a file, is not
    served (gentune's own export escapes such cells)."""
    storage = optuna.storages.RDBStorage(settings.database_url)
    formula = '=HYPERLINK("http://evil.example","x")'
    study = optuna.create_study(study_name="gentune-formula", storage=storage)
    study.optimize(lambda trial: len(trial.suggest_categorical("loss", [formula])), n_trials=1)
    client.headers.pop("accept-encoding", None)
    for path in ("/optuna/favicon.ico", "/optuna/static/bundle.js", "/optuna/dashboard"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    study_id = storage.get_study_id_from_name("gentune-formula")
    download = client.get(f"/optuna/csv/{study_id}")
    assert download.status_code == 404
    assert "export?format=trials.csv" in download.json()["reason"]
    assert formula not in download.text
