"""Claiming studies: atomic on the real database, even with workers racing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import optuna

from gentune.service.config import Settings
from gentune.service.db.models import WORKER_LOST, StudyState, utcnow
from gentune.service.db.repository import Repository
from gentune.service.db.session import optuna_storage, session_scope
from gentune.service.scheduling.runner import PRIMARY_SUFFIX, run_study
from gentune.service.schemas.study import StudySpec
from tests.support.specs import ring_spec


def _queue(url: str, n: int) -> list[int]:
    with session_scope(url) as session:
        repo = Repository(session)
        return [repo.create_study("q", "gan2d", ring_spec()).id for _ in range(n)]


def _drain(url: str) -> None:
    """Take every queued study out of the way of the next test."""
    with session_scope(url) as session:
        repo = Repository(session)
        while (study := repo.claim_next_study("drain")) is not None:
            repo.finish_study(study, StudyState.cancelled)


def test_racing_workers_claim_each_study_once(database_url: str) -> None:
    _drain(database_url)
    ids = _queue(database_url, 30)
    claims: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            with session_scope(database_url) as session:
                study = Repository(session).claim_next_study(name)
                study_id = study.id if study is not None else None
            if study_id is None:
                return
            with lock:
                claims.append((name, study_id))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counted = Counter(study_id for _, study_id in claims)
    assert sorted(counted) == ids
    assert set(counted.values()) == {1}
    with session_scope(database_url) as session:
        repo = Repository(session)
        owners = {repo.get_study(i).worker_id for i in ids}
        assert all(repo.get_study(i).state == StudyState.running for i in ids)
    assert owners <= {"w0", "w1", "w2", "w3"}
    _finish_all(database_url, ids)


def test_restarted_worker_gets_its_studies_back(database_url: str) -> None:
    _drain(database_url)
    (study_id,) = _queue(database_url, 1)
    with session_scope(database_url) as session:
        repo = Repository(session)
        assert repo.claim_next_study("old").id == study_id
        trial = repo.create_trial(study_id, 0, {"lr_g": 0.001}, "t0")
        repo.start_trial(trial.id)
    with session_scope(database_url) as session:
        assert Repository(session).requeue_studies_of_worker("old") == [study_id]
    with session_scope(database_url) as session:
        repo = Repository(session)
        assert repo.get_study(study_id).state == StudyState.queued
        assert repo.claim_next_study("new").id == study_id
        assert repo.get_trial(trial.id).state == "running"  # the study run fails it on resume
    _finish_all(database_url, [study_id])


def test_silent_studies_are_requeued(database_url: str) -> None:
    _drain(database_url)
    (study_id,) = _queue(database_url, 1)
    with session_scope(database_url) as session:
        repo = Repository(session)
        repo.claim_next_study("gone")
        assert repo.requeue_stale_studies(timedelta(minutes=5)) == []
        assert repo.requeue_stale_studies(timedelta(seconds=-1)) == [study_id]
    _finish_all(database_url, [study_id])


def _finish_all(url: str, ids: list[int]) -> None:
    with session_scope(url) as session:
        repo = Repository(session)
        for study_id in ids:
            repo.finish_study(repo.get_study(study_id), StudyState.cancelled)


def _claimed(settings: Settings, spec: dict, *, started_ago_s: float, claims: int) -> int:
    """A study claimed by worker "w", first started ``started_ago_s`` ago, run ``claims``
    times (this claim included)."""
    _drain(settings.database_url)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        stored = StudySpec.model_validate(spec).model_dump(mode="json")  # as the API stores
        study_id = repo.create_study(spec["name"], "gan2d", stored).id
        claimed = repo.claim_next_study("w")
        assert claimed is not None and claimed.id == study_id
        claimed.started_at = utcnow() - timedelta(seconds=started_ago_s)
        claimed.claims = claims
    return study_id


def _state(settings: Settings, study_id: int) -> tuple[str, str | None, int]:
    with session_scope(settings.database_url) as session:
        study = Repository(session).get_study(study_id)
        trials = Repository(session).list_trials(study_id, 0, 1)[1]
        return study.state, study.state_reason, trials


def test_the_time_budget_counts_from_the_first_start_across_resumes(settings: Settings) -> None:
    """A study resumed after its time budget ran out (counted from when it first started, not
    from this run) ends at once: it does not get its whole budget again at every resume."""
    spec = ring_spec(name="late-resume")
    spec["budget"] = {**spec["budget"], "timeout_s": 60}  # type: ignore[dict-item]
    study_id = _claimed(settings, spec, started_ago_s=120, claims=2)
    assert run_study(study_id, "w", settings) == StudyState.completed
    state, reason, trials = _state(settings, study_id)
    assert (state, reason, trials) == (
        StudyState.completed,
        "stopped when the study's time budget ran out",
        0,
    )


def test_a_study_whose_runs_keep_dying_fails_after_max_claims(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_claims": 3})
    study_id = _claimed(limited, ring_spec(name="keeps-dying"), started_ago_s=0, claims=4)
    assert run_study(study_id, "w", limited) == StudyState.failed
    state, reason, trials = _state(limited, study_id)
    assert state == StudyState.failed and trials == 0
    assert reason is not None and "without finishing it 3 times" in reason
    assert "GENTUNE_MAX_CLAIMS" in reason
    # At the limit it still runs (here it finds its time budget spent, to stay quick).
    spec = ring_spec(name="at-the-limit")
    spec["budget"] = {**spec["budget"], "timeout_s": 1}  # type: ignore[dict-item]
    at_limit = _claimed(limited, spec, started_ago_s=5, claims=3)
    assert run_study(at_limit, "w", limited) == StudyState.completed


def test_a_resumed_multi_objective_study_fails_the_lost_trials_in_both_optuna_studies(
    settings: Settings,
) -> None:
    """A multi-objective study keeps its primary objective's pruning history in a twin Optuna
    study; a lost run leaves a trial RUNNING in each, and the resume must end both (a RUNNING
    trial holds a constant liar's place, and Optuna and gentune would disagree for ever)."""
    spec = ring_spec(name="lost-multi")
    spec["objectives"] = [  # type: ignore[assignment]
        {"metric": "mode_score", "direction": "maximize"},
        {"metric": "frechet", "direction": "minimize"},
    ]
    spec.pop("objective", None)
    spec["budget"] = {**spec["budget"], "timeout_s": 1}  # type: ignore[dict-item]
    study_id = _claimed(settings, spec, started_ago_s=5, claims=2)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        name = repo.get_study(study_id).optuna_study_name
        lost = repo.create_trial(study_id, 0, {"lr_g": 1e-3}, None, None)
        lost_id = lost.id
    storage = optuna_storage(settings.database_url)
    main = optuna.create_study(
        study_name=name, storage=storage, directions=["maximize", "minimize"]
    )
    twin = optuna.create_study(
        study_name=f"{name}{PRIMARY_SUFFIX}", storage=storage, direction="maximize"
    )
    main.ask(), twin.ask()  # what the lost run had asked when it died

    run_study(study_id, "w", settings)  # resumes, finds its time spent, ends

    running = (optuna.trial.TrialState.RUNNING,)
    assert main.get_trials(states=running) == [] and twin.get_trials(states=running) == []
    with session_scope(settings.database_url) as session:
        trial = Repository(session).get_trial(lost_id)
        assert trial.state == "failed" and trial.reason == WORKER_LOST
