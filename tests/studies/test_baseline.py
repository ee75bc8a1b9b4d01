"""The baseline: the trainer's defaults fitted into the search space, queued first, and the
study's best reported against it through the API."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from gentune.service.config import Settings
from gentune.service.db.models import PruneRecord, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from gentune.service.schemas.study import CategoricalParam, FloatParam, IntParam, StudySpec
from gentune.service.studies.baseline import improvement
from gentune.service.studies.warm_start import (
    BASELINE,
    baseline_config,
    first_configs,
    nearest_allowed,
)
from gentune.trainers.registry import get_trainer
from tests.support.specs import ring_spec


def test_a_default_that_fits_is_kept_and_one_that_does_not_moves_to_the_nearest_value() -> None:
    log_range = FloatParam(type="float", low=1e-5, high=1e-3, log=True)
    assert nearest_allowed(log_range, 1e-4) == 1e-4
    assert nearest_allowed(log_range, 2e-3) == 1e-3
    assert nearest_allowed(log_range, 1e-7) == 1e-5
    stepped = FloatParam(type="float", low=0.0, high=1.0, step=0.25)
    assert nearest_allowed(stepped, 0.6) == 0.5
    assert nearest_allowed(stepped, 7.0) == 1.0
    ints = IntParam(type="int", low=64, high=512, step=64)
    assert nearest_allowed(ints, 256) == 256
    assert nearest_allowed(ints, 100) == 128  # 64 + 1 step: 100 is nearer 128 than 64
    assert nearest_allowed(ints, 8) == 64
    numbers = CategoricalParam(type="categorical", choices=[16, 64, 256])
    assert nearest_allowed(numbers, 100) == 64
    words = CategoricalParam(type="categorical", choices=["hinge", "wgan-gp"])
    assert nearest_allowed(words, "bce") == "hinge", "no nearer word: the first choice"
    flags = CategoricalParam(type="categorical", choices=[True])
    assert nearest_allowed(flags, False) is True
    assert nearest_allowed(ints, "x") is None


def test_the_baseline_config_is_the_trainers_defaults_fitted_and_notes_each_move() -> None:
    trainer = get_trainer("gan2d")
    assert trainer is not None
    spec = StudySpec.model_validate(
        ring_spec(
            search_space={
                "lr_g": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                "lr_d": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                "loss": {"type": "categorical", "choices": ["hinge", "wgan-gp"]},
                "batch_size": {"type": "int", "low": 32, "high": 512, "step": 32},
            },
            points_to_evaluate=[{"loss": "wgan-gp"}],
        )
    )
    config = baseline_config(spec.search_space, trainer)
    # gan2d's defaults: lr_g 1e-3, lr_d 2e-3, loss bce, batch_size 256.
    assert config.origin == BASELINE
    assert config.params == {"lr_g": 1e-3, "lr_d": 1e-3, "loss": "hinge", "batch_size": 256}
    assert set(config.adjusted) == {"lr_d", "loss"}
    assert "0.002" in config.adjusted["lr_d"] and "0.001" in config.adjusted["lr_d"]
    assert config.note is not None and config.note.startswith("lr_d: the default 0.002")
    queued = first_configs(spec, trainer, [])
    assert [c.origin for c in queued] == [BASELINE, "points_to_evaluate[0]"]

    off = spec.model_copy(update={"baseline": False})
    assert [c.origin for c in first_configs(off, trainer, [])] == ["points_to_evaluate[0]"]
    grid = StudySpec.model_validate(
        ring_spec(
            search_space={"loss": {"type": "categorical", "choices": ["bce", "hinge"]}},
            sampler={"type": "grid"},
        )
    )
    assert first_configs(grid, trainer, []) == [], "a grid runs its own points"


def test_improvement_is_relative_to_the_baseline_in_the_objectives_direction() -> None:
    assert improvement(0.93, 0.85, "maximize") == pytest.approx(0.0941, abs=1e-4)
    assert improvement(40.0, 50.0, "minimize") == pytest.approx(0.2)
    assert improvement(60.0, 50.0, "minimize") == pytest.approx(-0.2)
    assert improvement(0.5, 0.0, "maximize") is None
    assert improvement(math.nan, 1.0, "maximize") is None


def _record(
    settings: Settings,
    study_id: int,
    number: int,
    value: float,
    state: TrialState,
    origin: str | None = None,
) -> int:
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        trial = repo.create_trial(study_id, number, {"lr_g": 1e-3}, None, origin)
        repo.record_progress(trial.id, 1, {"mode_score": value}, value, 1, {})
        prune = PruneRecord("pruner/median", 1, {"mode_score": value})
        if state == TrialState.pruned:
            repo.finish_trial(trial.id, state, "median pruner at step 1: too low", prune)
        else:
            repo.finish_trial(trial.id, state)
        session.commit()
        return trial.id


def test_the_study_reports_its_best_against_the_baseline(
    client: TestClient, settings: Settings
) -> None:
    spec = ring_spec(
        search_space={"lr_g": {"type": "float", "low": 1e-5, "high": 5e-4, "log": True}}
    )
    study_id = client.post("/api/v1/studies", json=spec).json()["id"]
    queued = client.get(f"/api/v1/studies/{study_id}").json()["baseline"]
    assert queued["state"] == "queued" and queued["trial_id"] is None
    assert queued["params"] == {"lr_g": 5e-4}
    assert "moved to 0.0005" in queued["adjusted"]["lr_g"]
    assert queued["summary"] == "no best yet; defaults not run yet"

    baseline_id = _record(settings, study_id, 0, 0.85, TrialState.completed, BASELINE)
    first = client.get(f"/api/v1/studies/{study_id}").json()["baseline"]
    assert first["trial_id"] == baseline_id and first["value"] == 0.85
    assert first["summary"] == "best 0.85 is the defaults' own: no config beat them yet"
    _record(settings, study_id, 1, 0.93, TrialState.completed)
    study = client.get(f"/api/v1/studies/{study_id}").json()
    assert study["best"]["value"] == 0.93
    assert study["baseline"]["improvement"] == pytest.approx(0.08 / 0.85)
    assert study["baseline"]["summary"] == "best 0.93, defaults 0.85 (+9%)"
    best = client.get(f"/api/v1/studies/{study_id}/best").json()
    assert best["baseline"] == study["baseline"]

    off = client.post("/api/v1/studies", json=ring_spec(baseline=False)).json()
    assert off["baseline"] is None and off["definition"]["baseline"] is False


def test_a_pruned_baseline_is_said_so_and_the_best_may_then_be_lower(
    client: TestClient, settings: Settings
) -> None:
    study_id = client.post("/api/v1/studies", json=ring_spec()).json()["id"]
    _record(settings, study_id, 0, 0.9, TrialState.pruned, BASELINE)
    _record(settings, study_id, 1, 0.4, TrialState.completed)
    baseline = client.get(f"/api/v1/studies/{study_id}").json()["baseline"]
    assert baseline["state"] == "pruned" and baseline["improvement"] is None
    assert baseline["summary"] == (
        "best 0.4; defaults pruned at step 1 (0.9): median pruner at step 1: too low"
    )
