"""The dashboard's server-side aggregates and the text submission endpoint, on a real
database: trials are written through the same repository calls the worker's recorder makes."""

from __future__ import annotations

import math

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gentune.service.config import Settings
from gentune.service.db.models import PruneRecord, Study, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from tests.support.specs import ring_spec

YAML = {"Content-Type": "application/yaml"}


def _study_with_trials(client: TestClient, settings: Settings) -> tuple[int, list[int]]:
    """A ring8 study (maximize mode_score) with five trials:
    0 completed 0.5, 1 pruned at step 1 by divergence, 2 completed 0.9, 3 completed 0.7,
    4 running (one evaluation so far)."""
    study_id = client.post("/api/v1/studies", json=ring_spec(name="views")).json()["id"]
    outcomes = [
        ([0.3, 0.5], TrialState.completed),
        ([0.2], TrialState.pruned),
        ([0.4, 0.9], TrialState.completed),
        ([0.1, 0.7], TrialState.completed),
        ([0.05], TrialState.running),
    ]
    ids = []
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        for number, (values, state) in enumerate(outcomes):
            trial = repo.create_trial(
                study_id,
                number,
                {"lr_g": 10 ** -(2 + number / 2), "loss": "bce", "batch_size": 64 * (number + 1)},
                None,
            )
            ids.append(trial.id)
            best = -math.inf
            for step, value in enumerate(values):
                best = max(best, value)
                repo.record_progress(
                    trial.id,
                    step,
                    {"mode_score": value, "g_loss": 1.0 + step},
                    best,
                    step,
                    {"node": "node-a"},
                )
            if state == TrialState.pruned:
                repo.finish_trial(
                    trial.id,
                    state,
                    "g_loss diverged",
                    PruneRecord("stability/divergence", 0, {"g_loss": 1.0}),
                )
            elif state != TrialState.running:
                repo.finish_trial(trial.id, state)
    return study_id, ids


def test_columns_give_every_trial_and_the_best_so_far(
    client: TestClient, settings: Settings
) -> None:
    study_id, ids = _study_with_trials(client, settings)
    response = client.get(f"/api/v1/studies/{study_id}/columns")
    assert response.status_code == 200, response.text
    columns = response.json()
    assert columns["trial_id"] == ids
    assert columns["number"] == [0, 1, 2, 3, 4]
    assert columns["state"] == ["completed", "pruned", "completed", "completed", "running"]
    assert columns["value"] == [0.5, 0.2, 0.9, 0.7, 0.05]
    # maximize: the pruned and running trials do not count towards the best so far
    assert columns["best_so_far"] == [0.5, 0.5, 0.9, 0.9, 0.9]
    assert columns["pruned_by"][1] == "stability/divergence"
    assert columns["params"]["batch_size"] == [64, 128, 192, 256, 320]
    assert set(columns["params"]) == {"lr_g", "loss", "batch_size"}


def test_views_are_cached_until_the_study_changes(client: TestClient, settings: Settings) -> None:
    study_id, ids = _study_with_trials(client, settings)
    url = f"/api/v1/studies/{study_id}/columns"
    first = client.get(url)
    etag = first.headers["etag"]
    unchanged = client.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    with session_scope(settings.database_url) as session:
        Repository(session).record_progress(ids[4], 1, {"mode_score": 0.95}, 0.95, 1, {})
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["value"][4] == 0.95
    assert changed.json()["revision"] != first.json()["revision"]


def test_curves_hold_the_best_and_latest_trials_with_prune_reasons(
    client: TestClient, settings: Settings
) -> None:
    study_id, ids = _study_with_trials(client, settings)
    curves = client.get(
        f"/api/v1/studies/{study_id}/curves", params={"best": 1, "recent": 1}
    ).json()
    assert curves["metric"] == "mode_score"
    assert curves["total_trials"] == 5
    assert [c["trial_id"] for c in curves["trials"]] == [ids[2], ids[4]]
    best = curves["trials"][0]
    assert best["steps"] == [0, 1] and best["values"] == [0.4, 0.9]

    every = client.get(
        f"/api/v1/studies/{study_id}/curves", params={"best": 5, "recent": 0, "metric": "g_loss"}
    ).json()
    pruned = next(c for c in every["trials"] if c["state"] == "pruned")
    assert pruned["pruned_by"] == "stability/divergence"
    assert pruned["reason"] == "g_loss diverged"
    assert pruned["values"] == [1.0]
    assert len(every["trials"]) == 5


def test_importances_come_from_optuna_over_completed_trials(
    client: TestClient, settings: Settings
) -> None:
    study_id, _ = _study_with_trials(client, settings)
    out = client.get(f"/api/v1/studies/{study_id}/importances").json()
    assert out["n_trials"] == 3
    # 'loss' has one value across the trials but its distribution varies, so it is scored
    assert set(out["importances"]) == {"lr_g", "loss", "batch_size"}
    assert math.isclose(sum(out["importances"].values()), 1.0, rel_tol=1e-6)

    lonely = client.post("/api/v1/studies", json=ring_spec(name="empty")).json()["id"]
    empty = client.get(f"/api/v1/studies/{lonely}/importances").json()
    assert empty["importances"] == {} and "two completed trials" in empty["note"]


def test_trials_sort_by_value_with_empty_values_last(
    client: TestClient, settings: Settings
) -> None:
    study_id, ids = _study_with_trials(client, settings)
    with session_scope(settings.database_url) as session:
        Repository(session).create_trial(study_id, 5, {"lr_g": 0.01}, None)  # no value yet
    url = f"/api/v1/studies/{study_id}/trials"
    desc = client.get(url, params={"sort": "value", "order": "desc"}).json()["data"]
    assert [t["value"] for t in desc] == [0.9, 0.7, 0.5, 0.2, 0.05, None]
    asc = client.get(url, params={"sort": "value", "order": "asc", "limit": 2}).json()
    assert [t["value"] for t in asc["data"]] == [0.05, 0.2] and asc["count"] == 6
    pruned = client.get(url, params={"state": "pruned"}).json()
    assert [t["id"] for t in pruned["data"]] == [ids[1]]
    bad = client.get(url, params={"sort": "params"})
    assert bad.status_code == 422 and "sort" in bad.json()["errors"][0]["field"]


def test_trial_detail_has_config_thresholds_and_page(
    client: TestClient, settings: Settings
) -> None:
    study_id, ids = _study_with_trials(client, settings)
    trial = client.get(f"/api/v1/trials/{ids[2]}").json()
    assert trial["config"]["dataset"] == "ring8" and trial["config"]["batch_size"] == 192
    assert trial["page_url"].endswith(f"/trials/{ids[2]}")
    rules = {(t["rule"], t["metric"]) for t in trial["thresholds"]}
    # gan2d's defaults: gradient bound, mode collapse, discriminator collapse, divergence floor
    assert ("mode_collapse", "stability/diversity") in rules
    assert ("discriminator_collapse", "stability/d_accuracy") in rules
    assert any(rule == "gradient_explosion" for rule, _ in rules)
    assert any(rule == "divergence" for rule, _ in rules)


def _count_studies(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count(Study.id))) or 0)


def test_yaml_submission_queues_the_study(client: TestClient) -> None:
    text = yaml.safe_dump(ring_spec(name="from-yaml"), sort_keys=False)
    response = client.post("/api/v1/studies/yaml", content=text, headers=YAML)
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["name"] == "from-yaml" and study["state"] == "queued"
    assert study["page_url"].endswith(f"/studies/{study['id']}")
    # times say they are UTC on every database (SQLite returns them naive), or a browser
    # would read them as local time
    assert study["created_at"].endswith(("Z", "+00:00")), study["created_at"]


def test_yaml_errors_name_field_and_line_and_store_nothing(
    client: TestClient, settings: Settings
) -> None:
    before = _count_studies(settings)
    text = yaml.safe_dump(ring_spec(name="bad-yaml"), sort_keys=False).replace(
        "low: 0.0001", "low: 1.0"
    )
    lines = text.splitlines()
    low_line = next(i for i, line in enumerate(lines, 1) if "low: 1.0" in line)
    response = client.post("/api/v1/studies/yaml", content=text, headers=YAML)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == "search_space.lr_g.high"
    assert error["line"] == low_line + 1  # high sits under low

    good = yaml.safe_dump(ring_spec(name="bad-yaml"), sort_keys=False)
    unknown = good.replace("trainer: gan2d", "trainer: os:system")
    error = client.post("/api/v1/studies/yaml", content=unknown, headers=YAML).json()["errors"][0]
    assert error["field"] == "trainer" and error["line"] == 2

    broken = client.post(
        "/api/v1/studies/yaml", content="name: x\n  trainer: [oops\n", headers=YAML
    )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["field"] == "body"
    assert broken.json()["errors"][0]["line"] == 2

    listed = client.post("/api/v1/studies/yaml", content="- just\n- a list\n", headers=YAML)
    assert listed.status_code == 422 and "mapping" in listed.json()["detail"]
    assert _count_studies(settings) == before


def test_view_cache_computes_a_view_once_for_concurrent_requests() -> None:
    import threading
    import time

    from pydantic import BaseModel

    from gentune.service.studies.charts import ViewCache

    class Body(BaseModel):
        n: int

    calls: list[int] = []

    def slow() -> Body:
        calls.append(1)
        time.sleep(0.2)
        return Body(n=len(calls))

    cache = ViewCache()
    results: list[tuple[bytes, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(("k",), "r1", slow)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and [body for body, _ in results] == [b'{"n":1}'] * 4
    assert len({etag for _, etag in results}) == 1
    body, etag = cache.get(("k",), "r2", slow)  # a new revision is computed anew
    assert body == b'{"n":2}' and etag != results[0][1]


def test_view_cache_serves_the_previous_view_while_a_new_one_is_computed() -> None:
    import threading

    from pydantic import BaseModel

    from gentune.service.studies.charts import ViewCache

    class Body(BaseModel):
        n: int

    cache = ViewCache()
    cache.get(("k",), "r1", lambda: Body(n=1))
    started, release = threading.Event(), threading.Event()

    def slow() -> Body:
        started.set()
        assert release.wait(10), "the test never let the computation finish"
        return Body(n=2)

    fresh: list[bytes] = []
    computing = threading.Thread(target=lambda: fresh.append(cache.get(("k",), "r2", slow)[0]))
    computing.start()
    assert started.wait(10)
    # A second poller asks for the new revision meanwhile: it is answered with the previous
    # view at once instead of waiting (a computation that ran here would fail the test).
    stale, _ = cache.get(("k",), "r2", lambda: pytest.fail("computed twice"))
    assert stale == b'{"n":1}' and computing.is_alive()
    release.set()
    computing.join(10)
    assert fresh == [b'{"n":2}']
    assert cache.get(("k",), "r2", lambda: pytest.fail("not cached"))[0] == b'{"n":2}'
