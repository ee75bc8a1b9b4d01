"""LocalSearchSampler on a real Optuna study: its share of trials lands near the best config."""

from __future__ import annotations

import math

import optuna
import pytest

from gentune.service.scheduling.local_search import LocalSearchSampler
from gentune.service.scheduling.searcher import build_sampler
from gentune.service.schemas.study import TPESampler


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    width = trial.suggest_int("width", 16, 256, step=16)
    loss = trial.suggest_categorical("loss", ["bce", "hinge", "wgan-gp"])
    return (x - 0.3) ** 2 + abs(math.log10(lr) + 3) + width / 1000 + (loss != "bce")


def test_perturbed_trials_stay_near_the_best_and_inside_the_space() -> None:
    sampler = LocalSearchSampler(optuna.samplers.RandomSampler(seed=1), 1.0, 0.05, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x": 0.3, "lr": 1e-3, "width": 64, "loss": "bce"})
    study.optimize(_objective, n_trials=12)
    best = study.trials[0]
    assert study.best_trial.number == 0 or study.best_value <= best.value
    for trial in study.trials[1:]:
        # Every trial after the first completed one perturbs the best (share 1.0).
        assert abs(trial.params["x"] - 0.3) < 0.5
        assert abs(math.log10(trial.params["lr"]) + 3) < 1.5
        assert trial.params["width"] % 16 == 0 and 16 <= trial.params["width"] <= 256
        assert trial.params["loss"] in ("bce", "hinge", "wgan-gp")
    moved = {t.params["x"] for t in study.trials[1:]}
    assert len(moved) == 11, "each trial takes a step of its own"


def test_without_a_share_or_a_completed_trial_the_base_sampler_decides() -> None:
    never = LocalSearchSampler(optuna.samplers.RandomSampler(seed=1), 0.0, 0.05, seed=0)
    plain = optuna.samplers.RandomSampler(seed=1)
    a = optuna.create_study(sampler=never)
    b = optuna.create_study(sampler=plain)
    a.optimize(_objective, n_trials=5)
    b.optimize(_objective, n_trials=5)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    # A trial asked while none has completed cannot perturb: the base sampler answers.
    eager = LocalSearchSampler(optuna.samplers.RandomSampler(seed=1), 1.0, 0.05, seed=0)
    firsts = []
    for sampler in (eager, optuna.samplers.RandomSampler(seed=1)):
        first = optuna.create_study(sampler=sampler).ask()
        _objective(first)
        firsts.append(first.params)
    assert firsts[0] == firsts[1]


def test_the_tpe_spec_builds_it_only_with_a_local_share() -> None:
    plain = build_sampler(TPESampler(type="tpe", seed=0), {})
    assert isinstance(plain, optuna.samplers.TPESampler)
    local = build_sampler(TPESampler(type="tpe", seed=0, local_share=0.5), {})
    assert isinstance(local, LocalSearchSampler)
    with pytest.raises(ValueError):
        TPESampler(type="tpe", local_share=1.5)
