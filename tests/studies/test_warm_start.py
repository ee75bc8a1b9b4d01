"""points_to_evaluate, warm_start and refined definitions, through the API on a real database."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gentune.service.artifacts import ArtifactStore, artifact_path
from gentune.service.config import Settings
from gentune.service.db.models import TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from gentune.service.schemas.study import CategoricalParam, FloatParam, IntParam
from gentune.service.studies.warm_start import narrow
from tests.support.specs import ring_spec


def _errors(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def _count(client: TestClient) -> int:
    return int(client.get("/api/v1/studies").json()["count"])


def _finished_source(settings: Settings, client: TestClient, lrs: list[float]) -> int:
    """A study whose trials ran elsewhere: their records written as a worker writes them,
    value = lr_g * 100 (maximized), so the best trial is the one of the largest lr_g."""
    study_id = client.post("/api/v1/studies", json=ring_spec(name="source")).json()["id"]
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        for number, lr in enumerate(lrs):
            params = {"lr_g": lr, "loss": "hinge", "batch_size": 128}
            trial = repo.create_trial(study_id, number, params, None)
            repo.record_progress(trial.id, 1, {"mode_score": lr * 100}, lr * 100, 1, {})
            repo.finish_trial(trial.id, TrialState.completed)
        session.commit()
    return int(study_id)


def test_points_that_do_not_fit_the_space_are_refused_by_field(client: TestClient) -> None:
    before = _count(client)
    spec = ring_spec(
        budget={"n_trials": 3},
        points_to_evaluate=[
            {"lr_g": 0.001, "loss": "hinge"},
            {"lr_g": 0.5, "batch_size": 100, "loss": "l2"},
            {"z_dim": 4},
            {},
        ],
    )
    errors = _errors(client.post("/api/v1/studies", json=spec))
    assert "outside the searched range" in errors["points_to_evaluate.1.lr_g"]
    assert "not on the range's steps" in errors["points_to_evaluate.1.batch_size"]
    assert "not one of the choices" in errors["points_to_evaluate.1.loss"]
    assert "'z_dim' is not searched" in errors["points_to_evaluate.2.z_dim"]
    assert "is empty" in errors["points_to_evaluate.3"]
    assert "fewer than the 5 configs that the baseline" in errors["budget.n_trials"]
    assert not any(field.startswith("points_to_evaluate.0") for field in errors)

    grid = ring_spec(
        search_space={"loss": {"type": "categorical", "choices": ["bce", "hinge"]}},
        sampler={"type": "grid"},
        points_to_evaluate=[{"loss": "bce"}],
    )
    assert "grid study" in _errors(client.post("/api/v1/studies", json=grid))["points_to_evaluate"]
    assert _count(client) == before, "nothing refused is stored"


def test_a_warm_start_needs_a_finished_study_of_the_same_trainer(
    client: TestClient, settings: Settings
) -> None:
    queued = client.post("/api/v1/studies", json=ring_spec(name="queued")).json()["id"]
    before = _count(client)
    cases = {
        999_999: "there is no study 999999",
        queued: f"study {queued} has no completed trial yet (queued)",
    }
    for from_study, words in cases.items():
        spec = ring_spec(warm_start={"from_study": from_study})
        assert _errors(client.post("/api/v1/studies", json=spec))["warm_start.from_study"] == words
    other = {
        "name": "other-trainer",
        "trainer": "vae",
        "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        "objective": {"metric": "fid", "direction": "minimize"},
        "warm_start": {"from_study": queued},
    }
    message = _errors(client.post("/api/v1/studies", json=other))["warm_start.from_study"]
    assert "a warm start takes configs of the same trainer" in message
    as_yaml = client.post(
        "/api/v1/studies/yaml",
        content=b"name: w\ntrainer: gan2d\nobjective: {metric: mode_score, direction: maximize}\n"
        b"warm_start:\n  from_study: 999999\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert _errors(as_yaml)["warm_start.from_study"] == "there is no study 999999"
    assert as_yaml.json()["errors"][0]["line"] == 5, "the YAML error names its line"
    assert _count(client) == before


def test_a_warm_start_takes_the_best_trials_that_fit_and_records_them(
    client: TestClient, settings: Settings
) -> None:
    source = _finished_source(settings, client, [0.001, 0.02, 0.005, 0.009, 0.5])
    spec = ring_spec(
        name="warm",
        points_to_evaluate=[{"loss": "bce"}],
        warm_start={"from_study": source, "top_k": 3},
        budget={"n_trials": 5},  # the baseline, the point and three of the source's trials
    )
    created = client.post("/api/v1/studies", json=spec)
    assert created.status_code == 201, created.text
    stored = created.json()["definition"]
    trials = client.get(f"/api/v1/studies/{source}/trials", params={"sort": "number"}).json()
    ids = {t["number"]: t["id"] for t in trials["data"]}
    # The best three by value, best first. Those of lr_g 0.5 and 0.02 lie outside this
    # space's lr_g range: they bring their loss and batch_size, and the sampler picks lr_g.
    taken = [ids[4], ids[1], ids[3]]
    assert stored["warm_start"] == {"from_study": source, "top_k": 3, "trials": taken}
    assert stored["points_to_evaluate"] == [{"loss": "bce"}]

    # Named trials are taken as given, and must be the source's completed ones.
    named = ring_spec(warm_start={"from_study": source, "trials": [ids[2], ids[0]]})
    assert client.post("/api/v1/studies", json=named).status_code == 201
    wrong = ring_spec(warm_start={"from_study": source, "trials": [ids[2], 999_999]})
    errors = _errors(client.post("/api/v1/studies", json=wrong))
    assert errors == {"warm_start.trials.1": f"study {source} has no trial 999999"}

    none_fit = ring_spec(
        search_space={"lr_g": {"type": "float", "low": 0.6, "high": 0.9}},
        warm_start={"from_study": source},
    )
    message = _errors(client.post("/api/v1/studies", json=none_fit))["warm_start.from_study"]
    assert "lie outside this study's ranges" in message


def test_refined_definition_narrows_around_the_best_and_warm_starts(
    client: TestClient, settings: Settings
) -> None:
    queued = client.post("/api/v1/studies", json=ring_spec(name="nothing-yet")).json()["id"]
    response = client.get(f"/api/v1/studies/{queued}/refined")
    assert response.status_code == 409
    assert "no completed trial yet" in response.json()["detail"]
    assert client.get("/api/v1/studies/999999/refined").status_code == 404

    source = _finished_source(settings, client, [0.0002, 0.004, 0.001])
    response = client.get(f"/api/v1/studies/{source}/refined", params={"n_trials": 6})
    assert response.status_code == 200, response.text
    refined = response.json()
    assert refined["name"] == "source-refined"
    assert refined["budget"]["n_trials"] == 6
    assert refined["warm_start"] == {"from_study": source, "top_k": 5}
    lr = refined["search_space"]["lr_g"]
    # log range 1e-4..1e-2 is two decades; half of it, one decade, around 0.004.
    assert lr["log"] is True and lr["low"] < 0.004 < lr["high"]
    assert math.log10(lr["high"] / lr["low"]) == pytest.approx(1.0, abs=0.01)
    assert refined["search_space"]["loss"]["choices"] == ["bce", "hinge", "wgan-gp"]
    submitted = client.post("/api/v1/studies", json=refined)
    assert submitted.status_code == 201, submitted.text
    taken = submitted.json()["definition"]["warm_start"]["trials"]
    assert len(taken) == 3, "each brings what fits (lr_g 0.0002 does not, its loss does)"


def test_narrow_keeps_the_center_inside_and_the_old_bounds() -> None:
    log_range = FloatParam(type="float", low=1e-4, high=1e-2, log=True)
    edge = narrow(log_range, 1.2e-4, 0.5)  # near the low end: the window slides in
    assert edge.low == 1e-4 and math.log10(edge.high / edge.low) == pytest.approx(1, abs=0.01)
    stepped = FloatParam(type="float", low=0.0, high=1.0, step=0.1)
    cut = narrow(stepped, 0.5, 0.4)
    assert (cut.low, cut.high) == (pytest.approx(0.3), pytest.approx(0.7))
    ints = IntParam(type="int", low=64, high=512, step=64)
    cut_ints = narrow(ints, 256, 0.25)
    assert isinstance(cut_ints, IntParam)
    assert cut_ints.low <= 256 <= cut_ints.high and (cut_ints.low - 64) % 64 == 0
    assert cut_ints.high - cut_ints.low <= 192
    tiny = IntParam(type="int", low=2, high=3)
    assert narrow(tiny, 2, 0.1) == tiny, "two values stay two values"
    choices = CategoricalParam(type="categorical", choices=["a", "b"])
    assert narrow(choices, "a", 0.5) == choices


def test_fine_tuning_a_trial_that_is_still_running_is_refused_until_it_ends(
    client: TestClient, settings: Settings
) -> None:
    """Retention replaces a running trial's checkpoints as it trains, and deletes the file a
    fine-tuning study would name one save later: only an ended trial can be fine-tuned."""
    source = client.post("/api/v1/studies", json=ring_spec(name="source")).json()["id"]
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        trial = repo.create_trial(source, 0, {"lr_g": 1e-3}, None, None)
        repo.record_progress(trial.id, 1, {"mode_score": 0.5}, 0.5, 1, {})
        relative = artifact_path(source, trial.id, "best")
        size = ArtifactStore(settings.artifact_dir).save_checkpoint(relative, {"step": 1})
        repo.upsert_artifact(trial.id, "best", relative, 1, size)
        trial_id = trial.id
    spec = ring_spec(name="fine-tune")
    spec["params"] = {**spec["params"], "init_from": {"trial": trial_id}}  # type: ignore[dict-item]
    spec["search_space"] = {"lr_g": {"type": "float", "low": 1e-4, "high": 1e-3}}
    refused = _errors(client.post("/api/v1/studies", json=spec))
    assert "is still running" in refused["params.init_from.trial"], refused
    with session_scope(settings.database_url) as session:
        Repository(session).finish_trial(trial_id, TrialState.completed)
    accepted = client.post("/api/v1/studies", json=spec)
    assert accepted.status_code == 201, accepted.text
