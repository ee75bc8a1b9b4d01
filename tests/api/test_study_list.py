"""The study list reads every listed study's trials in a fixed number of queries, and says
what reading each study alone says: counts by state, the best feasible trial, the baseline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from gentune.service.config import Settings
from gentune.service.db.models import StudyState, TrialState
from gentune.service.db.repository import Repository, TrialBrief
from gentune.service.db.session import get_engine, session_scope
from gentune.service.studies.warm_start import BASELINE
from tests.support.records import add_trial
from tests.support.specs import ring_spec


@contextmanager
def statements(settings: Settings) -> Iterator[list[str]]:
    """The SQL statements the service's engine runs inside the block."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _seed(client: TestClient, settings: Settings, name: str) -> list[int]:
    """A maximizing study with trials in every state (the baseline first, a running one, an
    infeasible one with the highest value), a minimizing one (its trials report one value
    each), and one with no trials."""
    maximize = client.post("/api/v1/studies", json=ring_spec(name=f"{name}-max")).json()["id"]
    objective = {"metric": "frechet", "direction": "minimize"}
    minimize = client.post(
        "/api/v1/studies", json=ring_spec(name=f"{name}-min", objective=objective)
    ).json()
    empty = client.post("/api/v1/studies", json=ring_spec(name=f"{name}-empty")).json()["id"]
    add_trial(settings, maximize, 0, [0.2, 0.4], TrialState.completed, origin=BASELINE)
    add_trial(settings, maximize, 1, [0.1, 0.7], TrialState.completed)
    add_trial(settings, maximize, 2, [0.3], TrialState.pruned)
    add_trial(settings, maximize, 3, [0.05], TrialState.running)
    infeasible = add_trial(settings, maximize, 4, [0.5, 0.95], TrialState.completed)
    add_trial(settings, maximize, 5, [0.7], TrialState.completed)  # ties 1: the earlier wins
    add_trial(settings, minimize["id"], 0, [3.0], TrialState.completed)
    add_trial(settings, minimize["id"], 1, [1.0], TrialState.completed)
    add_trial(settings, minimize["id"], 2, [2.0], TrialState.failed)
    with session_scope(settings.database_url) as session:
        Repository(session).trials_by_id([infeasible])[0].feasible = False
    return [maximize, minimize["id"], empty]


def test_summaries_agree_with_reading_each_study_alone(
    client: TestClient, settings: Settings
) -> None:
    ids = _seed(client, settings, "summaries")
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        studies = [repo.get_study(i) for i in ids]
        summaries = repo.study_summaries(studies, BASELINE)
        for study in studies:
            direction = study.spec["objective"]["direction"]
            best = repo.best_trial(study.id, direction)
            baseline = repo.trial_of_origin(study.id, BASELINE)
            alone = (
                repo.trial_counts(study.id),
                TrialBrief.of(best) if best is not None else None,
                TrialBrief.of(baseline) if baseline is not None else None,
            )
            summary = summaries[study.id]
            assert (summary.counts, summary.best, summary.of_origin) == alone, study.name
        maximize, minimize, empty = (summaries[i] for i in ids)
    assert maximize.counts == {"pending": 0, "running": 1, "completed": 4, "pruned": 1, "failed": 0}
    assert maximize.best is not None and maximize.best.number == 1, "feasible, earliest of ties"
    assert maximize.of_origin is not None and maximize.of_origin.number == 0
    assert minimize.best is not None and minimize.best.value == 1.0
    assert minimize.of_origin is None and minimize.counts["failed"] == 1
    assert empty.best is None and empty.of_origin is None and sum(empty.counts.values()) == 0


def test_the_list_costs_the_same_queries_for_three_studies_or_nine(
    client: TestClient, settings: Settings
) -> None:
    _seed(client, settings, "few")
    with statements(settings) as few:
        page = client.get("/api/v1/studies", params={"limit": 3}).json()
    assert {s["name"]: s for s in page["data"]}["few-max"]["trial_counts"]["completed"] == 4
    for i in range(2):
        _seed(client, settings, f"more-{i}")
    with statements(settings) as many:
        page = client.get("/api/v1/studies", params={"limit": 9}).json()
    assert len(page["data"]) == 9
    assert len(many) == len(few), "one query for every listed study's trials, not one each"
    listed = {s["name"]: s for s in page["data"]}
    assert listed["more-1-max"]["best"]["value"] == 0.7
    assert listed["more-1-max"]["baseline"]["value"] == 0.4
    assert listed["more-1-min"]["best"]["value"] == 1.0


def test_study_trials_and_best_carry_etags_that_change_with_the_study(
    client: TestClient, settings: Settings
) -> None:
    study_id = _seed(client, settings, "tags")[0]
    paths = [f"/api/v1/studies/{study_id}{tail}" for tail in ("", "/trials", "/best")]
    tags = {}
    for path in paths:
        first = client.get(path)
        assert first.status_code == 200 and first.headers["ETag"], path
        tags[path] = first.headers["ETag"]
        again = client.get(path, headers={"If-None-Match": tags[path]})
        assert (again.status_code, again.content) == (304, b""), path
    assert client.get(paths[0]).json()["best"]["value"] == 0.7
    add_trial(settings, study_id, 6, [0.99], TrialState.completed)
    for path in paths:
        changed = client.get(path, headers={"If-None-Match": tags[path]})
        assert changed.status_code == 200 and changed.headers["ETag"] != tags[path], path
    assert client.get(paths[2]).json()["value"] == 0.99


def test_a_finished_studys_summary_is_served_from_cache_until_its_row_changes(
    client: TestClient, settings: Settings
) -> None:
    ids = _seed(client, settings, "cached")
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        for study_id in ids:
            repo.finish_study(repo.get_study(study_id), StudyState.completed, "budget used")
    params = {"limit": 3}
    first = client.get("/api/v1/studies", params=params)
    with statements(settings) as seen:
        again = client.get("/api/v1/studies", params=params)
    assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
    assert not [s for s in seen if "gentune_trials" in s], "finished summaries come from cache"
    # What the cache serves is what describing each study afresh says.
    for listed in first.json()["data"]:
        assert listed == client.get(f"/api/v1/studies/{listed['id']}").json()
    add_trial(settings, ids[2], 0, [0.9], TrialState.completed)  # a finished study's row is
    with session_scope(settings.database_url) as session:  # what changes it (a resume does)
        study = Repository(session).get_study(ids[2])
        study.claims += 1
    changed = client.get("/api/v1/studies", params=params)
    assert changed.headers["ETag"] != first.headers["ETag"]
    summary = {s["id"]: s for s in changed.json()["data"]}[ids[2]]
    assert summary["claims"] == 1 and summary["best"]["value"] == 0.9
