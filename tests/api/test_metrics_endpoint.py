"""GET /metrics: Prometheus text computed from a real database (SQLite, or Postgres with
GENTUNE_TEST_DATABASE_URL), request latency by route template, and a database outage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from gentune.service.app import create_app
from gentune.service.config import Settings
from gentune.service.db.models import PruneRecord, StudyState, TrialState, utcnow
from gentune.service.db.repository import Repository
from gentune.service.db.session import migrate, session_scope
from tests.support.databases import new_database_url
from tests.support.servers import LOCAL
from tests.support.specs import ring_spec

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TRIAL_DURATION = "gentune_trial_duration_seconds"
HTTP_DURATION = "gentune_http_request_duration_seconds"


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def empty_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a database of this test's own, so that counts are exact."""
    url, cleanup = new_database_url(tmp_path)
    migrate(url)
    yield settings.model_copy(update={"database_url": url})
    cleanup()  # type: ignore[operator]


def add_finished_trial(
    repo: Repository,
    study_id: int,
    number: int,
    state: TrialState,
    seconds: float,
    pruned_by: str | None = None,
) -> None:
    trial = repo.create_trial(study_id, number, {"lr": 0.01}, tune_trial_id=None)
    prune = PruneRecord(by=pruned_by, step=1, values={"fid": 1.0}) if pruned_by else None
    repo.finish_trial(
        trial.id, state, reason=None if state == TrialState.completed else "x", prune=prune
    )
    repo.session.refresh(trial)
    trial.created_at = T0
    trial.finished_at = T0 + timedelta(seconds=seconds)
    repo.session.flush()


def test_metrics_count_studies_trials_pruning_and_durations(empty_settings: Settings) -> None:
    with session_scope(empty_settings.database_url) as session:
        repo = Repository(session)
        ids = [repo.create_study(f"s{i}", "gan2d", ring_spec()).id for i in range(6)]
        claimed = [repo.claim_next_study(worker) for worker in ("w1", "w2", "w1")]
        assert [study.id for study in claimed if study] == ids[:3]
        repo.finish_study(repo.get_study(ids[2]), StudyState.completed)
        repo.request_cancel(ids[3])
        repo.finish_study(repo.get_study(ids[4]), StudyState.failed, "boom")
        repo.get_study(ids[0]).heartbeat_at = utcnow() - timedelta(seconds=300)

        trials = [
            (TrialState.completed, 0.5, None),
            (TrialState.completed, 5, None),  # on a bucket's bound: counted in it
            (TrialState.completed, 100, None),
            (TrialState.completed, 4000, None),
            (TrialState.pruned, 20, "stability/nan"),
            (TrialState.pruned, 700, "stability/nan"),
            (TrialState.pruned, 45, "pruner/median"),
            (TrialState.pruned, 2, None),
            (TrialState.failed, 30000, None),
        ]
        for number, (final_state, seconds, pruned_by) in enumerate(trials):
            add_finished_trial(repo, ids[0], number, final_state, seconds, pruned_by)
        repo.create_trial(ids[1], 0, {"lr": 0.1}, tune_trial_id=None)  # waits for resources
        started = repo.create_trial(ids[1], 1, {"lr": 0.2}, tune_trial_id=None)
        repo.start_trial(started.id)  # trains

    with TestClient(base_url=LOCAL, app=create_app(empty_settings)) as client:
        samples = scrape(client)

    assert value(samples, "gentune_database_up") == 1
    studies = {"queued": 1, "running": 2, "completed": 1, "failed": 1, "cancelled": 1}
    for state, count in studies.items():
        assert value(samples, "gentune_studies", state=state) == count, state
    trials_by_state = {"pending": 1, "running": 1, "completed": 4, "pruned": 4, "failed": 1}
    for state, count in trials_by_state.items():
        assert value(samples, "gentune_trials", state=state) == count, state
    pruned = {k[1]: v for k, v in samples.items() if k[0] == "gentune_trials_pruned"}
    assert pruned == {
        frozenset({("pruned_by", "stability/nan")}): 2,
        frozenset({("pruned_by", "pruner/median")}): 1,
        frozenset({("pruned_by", "unknown")}): 1,
    }

    bounds = ["1.0", "5.0", "15.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1800.0"]
    bounds += ["3600.0", "7200.0", "21600.0", "+Inf"]
    expected = {
        "completed": ([1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4], 4105.5),
        "pruned": ([0, 1, 1, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4], 767.0),
        "failed": ([0] * 12 + [1], 30000.0),
    }
    for state, (cumulative, total) in expected.items():
        buckets = [value(samples, f"{TRIAL_DURATION}_bucket", state=state, le=b) for b in bounds]
        assert buckets == cumulative, state
        assert value(samples, f"{TRIAL_DURATION}_count", state=state) == cumulative[-1]
        assert value(samples, f"{TRIAL_DURATION}_sum", state=state) == pytest.approx(total)

    assert value(samples, "gentune_workers_active") == 2
    assert 300 <= value(samples, "gentune_study_heartbeat_age_seconds") < 360


def test_request_latency_is_labelled_by_route_template(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(base_url=LOCAL, app=create_app(guarded)) as client:
        for _ in range(2):
            assert client.get("/api/v1/studies/987654").status_code == 404
        assert client.get("/api/v1/no/such/thing").status_code == 404
        assert client.get("/metrics").status_code == 200, "a read: open without the token"
        samples = scrape(client)

    template = "/api/v1/studies/{study_id}"
    count = value(samples, f"{HTTP_DURATION}_count", method="GET", route=template, status="404")
    assert count == 2
    inf = value(
        samples, f"{HTTP_DURATION}_bucket", method="GET", route=template, status="404", le="+Inf"
    )
    assert inf == 2
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(samples, f"{HTTP_DURATION}_count", **unmatched) == 1
    routes = {
        dict(labels).get("route") for name, labels in samples if name.startswith(HTTP_DURATION)
    }
    assert routes == {template, "<unmatched>"}, "raw paths and /metrics itself are not recorded"


def test_metrics_answer_with_database_down(tmp_path: Path) -> None:
    unreachable = Settings(
        database_url="postgresql+psycopg2://gentune@127.0.0.1:1/gentune",  # nothing listens
        artifact_dir=str(tmp_path / "artifacts"),
        api_token=None,
        public_url=None,
    )
    with TestClient(base_url=LOCAL, app=create_app(unreachable, run_migrations=False)) as client:
        assert client.get("/api/v1/studies").status_code == 503
        samples = scrape(client)

    assert value(samples, "gentune_database_up") == 0
    assert not any(name.startswith(("gentune_studies", "gentune_trials")) for name, _ in samples)
    labels = {"method": "GET", "route": "/api/v1/studies", "status": "503"}
    assert value(samples, f"{HTTP_DURATION}_count", **labels) == 1
