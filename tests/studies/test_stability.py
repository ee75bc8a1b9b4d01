"""Stability rules: each fires on what it is meant to catch, at the step it should, with the
values that tripped it, and leaves healthy histories alone; defaults resolve per trainer."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gentune.service.schemas.study import StabilitySpec, StudySpec
from gentune.service.studies.space import PRUNER_ADAPTER, pruner_for
from gentune.service.studies.stability import (
    RULE_ADAPTER,
    StabilityMonitor,
    Verdict,
    default_rules,
    resolve_rules,
    rule_metrics,
    watched_metrics,
)
from gentune.trainers.base import MetricSpec
from gentune.trainers.registry import get_trainer, trainer_names


def replay(
    rule: dict[str, Any],
    history: list[dict[str, float]],
    objective: str = "fid",
    direction: str = "minimize",
    watched: tuple[str, ...] = (),
) -> Verdict | None:
    monitor = StabilityMonitor([RULE_ADAPTER.validate_python(rule)], objective, direction, watched)
    return _first_verdict(monitor, history)


def test_non_finite_stops_at_once_on_any_watched_metric() -> None:
    history = [{"fid": 300.0, "g_loss": 1.0}, {"fid": 250.0, "g_loss": math.inf}]
    verdict = replay({"type": "non_finite"}, history, watched=("fid", "g_loss"))
    assert verdict is not None
    assert (verdict.rule, verdict.step, verdict.values) == ("non_finite", 2, {"g_loss": math.inf})
    assert "g_loss is inf" in verdict.message


def test_non_finite_ignores_metrics_it_does_not_watch() -> None:
    history = [{"fid": 300.0, "is": math.nan}]
    assert replay({"type": "non_finite"}, history, watched=("fid",)) is None


def test_divergence_needs_its_patience_and_reports_the_running_minimum() -> None:
    losses = [40.0, 30.0, 95.0, 20.0, 95.0, 100.0]
    history = [{"loss": v} for v in losses]
    verdict = replay({"type": "divergence", "metrics": ["loss"], "factor": 3}, history)
    # 95 > 3 x 30 at step 3, but step 4 breaks the streak; 95 and 100 > 3 x 20 at steps 5-6.
    assert verdict is not None and verdict.step == 6
    assert verdict.values == {"loss": 100.0, "loss_running_min": 20.0}
    assert "for 2 evaluations in a row" in verdict.message


def test_divergence_floor_spares_losses_that_may_be_negative() -> None:
    wgan = [{"g_loss": v} for v in (-0.7, 0.3, 3.6, 5.9, 6.3)]
    rule = {"type": "divergence", "metrics": ["g_loss"], "factor": 10, "floor": 10}
    assert replay(rule, wgan) is None
    blown = [{"g_loss": v} for v in (-80.0, 187.0, 15.2)]
    verdict = replay(rule, blown)
    assert verdict is not None and verdict.step == 3


def test_discriminator_collapse_needs_d_winning_while_g_gets_nowhere() -> None:
    rule = {"type": "discriminator_collapse", "accuracy": 0.99, "patience": 3}
    stuck = [
        {"stability/d_accuracy": 1.0, "g_loss": 10.9, "d_loss": 0.003},
        {"stability/d_accuracy": 1.0, "g_loss": 12.6, "d_loss": 0.05},
        {"stability/d_accuracy": 1.0, "g_loss": 9.98, "d_loss": 0.02},
    ]
    verdict = replay(rule, stuck)
    assert verdict is not None and verdict.step == 3
    assert verdict.values["g_loss_at_start"] == 10.9
    # G catching up (its loss falling by more than 10%) is not collapse, nor is a D that
    # wins only now and then.
    catching_up = [{**m, "g_loss": g} for m, g in zip(stuck, (10.0, 8.0, 6.0), strict=True)]
    assert replay(rule, catching_up) is None
    flickering = [{**stuck[0], "stability/d_accuracy": a} for a in (0.989, 1.0, 0.958, 1.0)]
    assert replay(rule, flickering) is None
    # With a floor, D must also have saturated: early on it separates crude fakes easily.
    floored = {**rule, "d_loss_floor": 0.1}
    assert replay(floored, stuck) is not None
    separating = [{**m, "d_loss": 0.84} for m in stuck]
    assert replay(floored, separating) is None


def test_discriminator_collapse_never_fires_without_d_accuracy() -> None:
    history = [{"g_loss": float(i), "d_loss": -5.0} for i in range(10)]
    assert replay({"type": "discriminator_collapse"}, history) is None


def test_gradient_explosion_on_a_bound_and_on_a_jump() -> None:
    bound = [{"grad_norm": v} for v in (1.0, 2.0, 600.0)]
    verdict = replay(
        {"type": "gradient_explosion", "metrics": ["grad_norm"], "max_norm": 500}, bound
    )
    assert verdict is not None and verdict.values == {"grad_norm": 600.0, "max_norm": 500.0}
    jump = [{"grad_norm": v} for v in (1.0, 2.0, 1.5, 160.0)]
    rule = {"type": "gradient_explosion", "metrics": ["grad_norm"], "factor": 100}
    verdict = replay(rule, jump)
    assert verdict is not None and verdict.step == 4
    assert verdict.values == {"grad_norm": 160.0, "grad_norm_median": 1.5}
    steady_growth = [{"grad_norm": 1.5**i} for i in range(12)]
    assert replay(rule, steady_growth) is None


def test_mode_collapse_respects_warmup_and_patience() -> None:
    rule = {"type": "mode_collapse", "min_ratio": 0.1, "patience": 2, "warmup": 1}
    slow_start = [{"stability/diversity": v} for v in (0.05, 0.2, 0.4, 0.6)]
    assert replay(rule, slow_start) is None
    collapsed = [{"stability/diversity": v} for v in (0.05, 0.02, 0.01, 0.01)]
    verdict = replay(rule, collapsed)
    assert verdict is not None and verdict.step == 3
    assert verdict.values == {"stability/diversity": 0.01}


def test_stalled_counts_evaluations_without_a_new_best() -> None:
    rule = {"type": "stalled", "patience": 3}
    history = [{"mode_score": v} for v in (0.1, 0.5, 0.4, 0.6, 0.55, 0.5, 0.58)]
    verdict = replay(rule, history, objective="mode_score", direction="maximize")
    assert verdict is not None and verdict.step == 7
    assert verdict.values == {"mode_score": 0.58, "mode_score_best": 0.6}
    improving = [{"mode_score": 0.1 * i} for i in range(10)]
    assert replay(rule, improving, objective="mode_score", direction="maximize") is None


def test_the_first_rule_in_order_wins() -> None:
    rules = [
        RULE_ADAPTER.validate_python({"type": "non_finite"}),
        RULE_ADAPTER.validate_python({"type": "mode_collapse", "patience": 1}),
    ]
    monitor = StabilityMonitor(rules, "fid", "minimize", ("fid",))
    verdict = monitor.observe(1, {"fid": math.nan, "stability/diversity": 0.0})
    assert verdict is not None and verdict.rule == "non_finite"


@pytest.mark.parametrize("name", trainer_names())
def test_every_trainers_default_rules_validate_and_name_its_metrics(name: str) -> None:
    trainer = get_trainer(name)
    assert trainer is not None
    rules = default_rules(trainer)
    assert rules[0].type == "non_finite"
    for rule in rules:
        for _, metric in rule_metrics(rule):
            assert metric in trainer.metrics, (name, rule.type, metric)


@pytest.mark.parametrize("name", trainer_names())
def test_every_trainers_default_pruner_validates(name: str) -> None:
    trainer = get_trainer(name)
    assert trainer is not None
    spec = StudySpec.model_validate(
        {"name": "x", "trainer": name, "objective": {"metric": "loss", "direction": "minimize"}}
    )
    pruner = pruner_for(spec, trainer)
    assert pruner.type != "none"
    explicit = spec.model_copy(update={"pruner": PRUNER_ADAPTER.validate_python({"type": "none"})})
    assert pruner_for(explicit, trainer).type == "none"


def test_listed_rules_replace_defaults_of_their_type_and_can_switch_them_off() -> None:
    trainer = get_trainer("gan2d")
    assert trainer is not None
    defaults = {rule.type: rule for rule in default_rules(trainer)}
    spec = StabilitySpec.model_validate(
        {
            "rules": [
                {"type": "mode_collapse", "min_ratio": 0.5},
                {"type": "gradient_explosion", "metrics": ["grad_norm_d"], "enabled": False},
                {"type": "stalled", "patience": 4},
            ]
        }
    )
    resolved = {rule.type: rule for rule in resolve_rules(spec, trainer)}
    assert resolved["mode_collapse"].min_ratio == 0.5  # type: ignore[union-attr]
    assert "gradient_explosion" not in resolved
    assert resolved["divergence"] == defaults["divergence"]
    assert resolved["stalled"].patience == 4
    only_listed = resolve_rules(
        StabilitySpec.model_validate({"defaults": False, "rules": [{"type": "stalled"}]}),
        trainer,
    )
    assert [rule.type for rule in only_listed] == ["stalled"]


def test_non_finite_watches_what_the_params_report() -> None:
    trainer = get_trainer("dcgan")
    assert trainer is not None
    random = watched_metrics(trainer, trainer.parse_params({"features": "random"}), "fid")
    assert "is" not in random and "seconds_per_step" not in random and "g_loss" in random
    wgan = watched_metrics(trainer, trainer.parse_params({"loss": "wgan-gp"}), "fid")
    assert "stability/d_accuracy" not in wgan


def _dead_monitor(
    peers: list[list[float]],
    rule: dict[str, Any] | None = None,
    worst: float | None = 0.0,
    horizon: int | None = None,
) -> StabilityMonitor:
    """dead_objective on mode_score (maximized, worst value ``worst``), the study's completed
    trials given as their objective at each step."""

    def completed(step: int) -> list[float]:
        return [max(values[:step]) for values in peers if len(values) >= step]

    return StabilityMonitor(
        [RULE_ADAPTER.validate_python({"type": "dead_objective", **(rule or {})})],
        "mode_score",
        "maximize",
        metric_specs={
            "mode_score": MetricSpec("", "maximize", worst=worst),
            "frechet": MetricSpec("", "minimize"),
        },
        peers=completed,
        horizon=horizon,
    )


def _first_verdict(monitor: StabilityMonitor, history: list[dict[str, float]]) -> Verdict | None:
    for step, metrics in enumerate(history, start=1):
        verdict = monitor.observe(step, metrics)
        if verdict is not None:
            return verdict
    return None


def test_dead_objective_stops_a_trial_stuck_at_its_floor_while_others_did_better() -> None:
    good = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8]
    dead = [{"mode_score": 0.0}] * 6
    # warmup 3 (default): evaluations 1-3 ignored; patience 2: stopped at the 5th.
    verdict = _first_verdict(_dead_monitor([good]), dead)
    assert verdict is not None and (verdict.rule, verdict.step) == ("dead_objective", 5)
    assert verdict.values == {
        "mode_score": 0.0,
        "mode_score_floor": 0.0,
        "mode_score_peers_best": 0.7,
        "peers_better": 1.0,
    }
    assert verdict.message == (
        "dead objective at step 5: mode_score has not moved off 0 (the worst it can be), while "
        "1 other trial had reached up to 0.7 by this step for 2 evaluations in a row"
    )
    # A tie at the floor is no reason: with every completed trial at 0 too, it goes on.
    assert _first_verdict(_dead_monitor([[0.0] * 6, [0.0] * 6]), dead) is None
    # Nor without completed trials, nor once the objective has moved at all.
    assert _first_verdict(_dead_monitor([]), dead) is None
    moved = [{"mode_score": v} for v in (0.0, 0.0, 0.0, 0.001, 0.0, 0.0)]
    assert _first_verdict(_dead_monitor([good]), moved) is None


def test_dead_objective_spares_a_slow_starter_whose_guide_improves() -> None:
    rule = {"guide": "frechet", "guide_delta": 0.2}
    # The objective sits at 0, but frechet falls to 75% of its first value by step 4.
    slow = [{"mode_score": 0.0, "frechet": f} for f in (1.0, 0.95, 0.9, 0.75, 0.7, 0.6)]
    good = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8]
    assert _first_verdict(_dead_monitor([good], rule), slow) is None
    stuck = [{"mode_score": 0.0, "frechet": f} for f in (1.0, 0.95, 1.1, 0.9, 0.85, 0.9)]
    verdict = _first_verdict(_dead_monitor([good], rule), stuck)
    assert verdict is not None and verdict.step == 5
    assert "frechet is not 20% better than at first" in verdict.message


def test_a_guide_spares_a_slow_starter_only_for_the_first_part_of_its_run() -> None:
    rule = {"guide": "frechet", "guide_delta": 0.2}  # guide_until 0.67 by default
    good = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9]
    # frechet keeps falling, mode_score never leaves 0: a dead trial with a busy guide.
    busy = [{"mode_score": 0.0, "frechet": 1 / (1 + 0.1 * i)} for i in range(12)]
    assert _first_verdict(_dead_monitor([good], rule), busy) is None, "no horizon: spared"
    verdict = _first_verdict(_dead_monitor([good], rule, horizon=12), busy)
    # Past 0.67 x 12 = 8.04, steps 9 and 10 count (patience 2): stopped at 10 of 12.
    assert verdict is not None and verdict.step == 10
    assert "by step 10 of 12 (frechet's progress spares a trial only for the first 67%" in (
        verdict.message
    )
    # The labelled late escaper leaves 0 at 60% of its run: inside the grace, it goes on.
    late = [{"mode_score": 0.0 if i < 18 else 0.5, "frechet": 1 / (1 + 0.1 * i)} for i in range(30)]
    assert _first_verdict(_dead_monitor([good * 3], rule, horizon=30), late) is None
    everything = {**rule, "guide_until": 1.0}
    assert _first_verdict(_dead_monitor([good], everything, horizon=12), busy) is None


def test_every_trainer_knows_how_many_evaluations_a_run_makes() -> None:
    for name in ("gan2d", "dcgan", "vae", "ddpm"):
        trainer = get_trainer(name)
        assert trainer is not None
        assert trainer.evaluations(trainer.parse_params({"epochs": 7})) == 7


def test_dead_objective_without_a_worst_value_takes_the_first_as_the_floor() -> None:
    good = [0.0, 0.2, 0.4, 0.6, 0.8, 0.9]
    flat = [{"mode_score": v} for v in (0.3, 0.3, 0.1, 0.2, 0.3, 0.25)]
    verdict = _first_verdict(_dead_monitor([good], worst=None), flat)
    assert verdict is not None and verdict.step == 5
    assert verdict.values["mode_score_floor"] == 0.3
    assert "(its first value)" in verdict.message
    better = [{"mode_score": v} for v in (0.3, 0.3, 0.1, 0.31, 0.3, 0.25)]
    assert _first_verdict(_dead_monitor([good], worst=None), better) is None
    min_delta = {"min_delta": 0.05}
    assert _first_verdict(_dead_monitor([good], min_delta, worst=None), better) is not None
