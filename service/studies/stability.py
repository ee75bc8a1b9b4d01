"""Stability rules: stop a trial whose training has gone wrong, and say which rule saw what.

A study's rules are the trainer's defaults (``Trainer.stability_defaults``, plain data) with
the study's own ``stability.rules`` laid over them, one rule per type. ``StabilityMonitor``
follows one trial: at each evaluation every rule looks at all of the trial's metrics, and
the first rule whose condition has held for its ``patience`` evaluations in a row (after its
``warmup``) returns a ``Verdict``. Pure Python over floats: the pruning scheduler, the tests
and ``benchmarks/stability.py`` all run the same code.
"""

from __future__ import annotations

import abc
import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from gentune.service.schemas.study import (
    DeadObjectiveRule,
    DiscriminatorCollapseRule,
    DivergenceRule,
    GradientExplosionRule,
    ModeCollapseRule,
    NonFiniteRule,
    StabilityRule,
    StabilitySpec,
    StalledRule,
)
from gentune.trainers.base import MetricSpec, Trainer, TrainerParams

RULE_ADAPTER: TypeAdapter[StabilityRule] = TypeAdapter(StabilityRule)

BASE_RULES: tuple[dict[str, Any], ...] = ({"type": "non_finite"}, {"type": "dead_objective"})
"""Rules every trainer gets, before its own defaults."""

Peers = Callable[[int], list[float]]
"""The objective values that the study's completed trials reached by a step, each its best
up to that step: what ``dead_objective`` compares a trial with."""


def default_rules(trainer: Trainer) -> list[StabilityRule]:
    """The rules a study of ``trainer`` gets when it lists none."""
    by_type = {raw["type"]: raw for raw in (*BASE_RULES, *trainer.stability_defaults)}
    return [RULE_ADAPTER.validate_python(raw) for raw in by_type.values()]


def resolve_rules(spec: StabilitySpec, trainer: Trainer) -> list[StabilityRule]:
    """The rules in force: defaults (unless turned off), each replaced by a listed rule of its
    type; rules with ``enabled: false`` dropped."""
    rules: dict[str, StabilityRule] = {}
    if spec.defaults:
        rules = {rule.type: rule for rule in default_rules(trainer)}
    for rule in spec.rules:
        rules[rule.type] = rule
    return [rule for rule in rules.values() if rule.enabled]


def rule_metrics(rule: StabilityRule) -> list[tuple[str, str]]:
    """(field path within the rule, metric name) for each metric ``rule`` names."""
    match rule:
        case DivergenceRule() | GradientExplosionRule():
            return [(f"metrics.{i}", name) for i, name in enumerate(rule.metrics)]
        case NonFiniteRule() if rule.metrics is not None:
            return [(f"metrics.{i}", name) for i, name in enumerate(rule.metrics)]
        case ModeCollapseRule():
            return [("metric", rule.metric)]
        case DiscriminatorCollapseRule():
            needed = ["stability/d_accuracy", "g_loss"]
            if rule.d_loss_floor is not None:
                needed.append("d_loss")
            return [("type", name) for name in needed]
    return []


def watched_metrics(trainer: Trainer, params: TrainerParams, objective: str) -> set[str]:
    """What ``non_finite`` watches when it names no metrics: the objective and every metric
    the trainer reports with ``params``, wall-clock timings aside."""
    reported = trainer.reported_metrics(params)
    return {objective} | {name for name, spec in reported.items() if not spec.timing}


@dataclass(frozen=True)
class Verdict:
    """A rule's decision to stop a trial: which rule, at which step, on which values."""

    rule: str
    step: int
    values: dict[str, float]
    message: str


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class RuleCheck(abc.ABC):
    """One rule following one trial; the base counts the streak and applies warmup."""

    def __init__(self, rule: StabilityRule) -> None:
        self.rule = rule
        self.seen = 0
        self.streak = 0

    def observe(self, step: int, metrics: Mapping[str, float]) -> Verdict | None:
        self.seen += 1
        hit = self.condition(metrics)
        self.remember(metrics)
        if self.seen <= self.rule.warmup or hit is None:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < self.rule.patience:
            return None
        values, why = hit
        streak = f" for {self.streak} evaluations in a row" if self.rule.patience > 1 else ""
        return Verdict(
            self.rule.type,
            step,
            values,
            f"{self.rule.type.replace('_', ' ')} at step {step}: {why}{streak}",
        )

    @abc.abstractmethod
    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        """The values that trip the rule and why in words, or None when all is well."""

    def remember(self, metrics: Mapping[str, float]) -> None:  # noqa: B027 (most rules keep nothing)
        """Keep what later evaluations compare against (running minimum, history)."""


class NonFiniteCheck(RuleCheck):
    rule: NonFiniteRule

    def __init__(self, rule: NonFiniteRule, watched: Collection[str]) -> None:
        super().__init__(rule)
        self.watched = set(rule.metrics) if rule.metrics is not None else set(watched)

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        bad = {
            name: value
            for name, value in sorted(metrics.items())
            if name in self.watched and not math.isfinite(value)
        }
        if not bad:
            return None
        listed = ", ".join(f"{name} is {value}" for name, value in bad.items())
        return bad, f"{listed}: training has blown up"


class DivergenceCheck(RuleCheck):
    rule: DivergenceRule

    def __init__(self, rule: DivergenceRule) -> None:
        super().__init__(rule)
        self.minimum: dict[str, float] = {}

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        for name in self.rule.metrics:
            value, low = metrics.get(name), self.minimum.get(name)
            if value is None or low is None or not math.isfinite(value):
                continue
            bound = max(self.rule.factor * max(low, 0.0), self.rule.floor)
            if value > bound:
                return (
                    {name: value, f"{name}_running_min": low},
                    f"{name} {_fmt(value)} is above {self.rule.factor:g}x its lowest value "
                    f"{_fmt(low)}",
                )
        return None

    def remember(self, metrics: Mapping[str, float]) -> None:
        for name in self.rule.metrics:
            value = metrics.get(name)
            if value is not None and math.isfinite(value):
                self.minimum[name] = min(self.minimum.get(name, value), value)


class DiscriminatorCollapseCheck(RuleCheck):
    rule: DiscriminatorCollapseRule

    def __init__(self, rule: DiscriminatorCollapseRule) -> None:
        super().__init__(rule)
        self.g_losses: list[float] = []

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        accuracy = metrics.get("stability/d_accuracy", math.nan)
        d_loss = metrics.get("d_loss", math.nan)
        g_loss = metrics.get("g_loss", math.nan)
        # Early on a healthy D separates the crude fakes too; winning outright means its loss
        # has saturated as well (below d_loss_floor, when one is set).
        wins = accuracy >= self.rule.accuracy and (
            self.rule.d_loss_floor is None or d_loss < self.rule.d_loss_floor
        )
        # G makes no headway: its loss has not come down (by over 10%) since D began winning.
        start = self.g_losses[-self.streak] if self.streak else None
        stuck = start is None or g_loss >= start - 0.1 * abs(start)
        if not (wins and stuck and math.isfinite(g_loss)):
            return None
        values = {"stability/d_accuracy": accuracy, "d_loss": d_loss, "g_loss": g_loss}
        if start is not None:
            values["g_loss_at_start"] = start
        return values, (
            f"D separates {accuracy:.1%} of real/fake pairs (d_loss {_fmt(d_loss)}) while "
            f"g_loss stays at {_fmt(g_loss)}"
        )

    def remember(self, metrics: Mapping[str, float]) -> None:
        self.g_losses.append(metrics.get("g_loss", math.nan))


class GradientExplosionCheck(RuleCheck):
    rule: GradientExplosionRule

    def __init__(self, rule: GradientExplosionRule) -> None:
        super().__init__(rule)
        self.history: dict[str, list[float]] = {name: [] for name in rule.metrics}

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        for name in self.rule.metrics:
            value = metrics.get(name)
            if value is None or not math.isfinite(value):
                continue
            if value > self.rule.max_norm:
                return (
                    {name: value, "max_norm": self.rule.max_norm},
                    f"{name} {_fmt(value)} is above the bound {self.rule.max_norm:g}",
                )
            earlier = self.history[name]
            if self.rule.factor is not None and len(earlier) >= 2:
                usual = statistics.median(earlier)
                if usual > 0 and value > self.rule.factor * usual:
                    return (
                        {name: value, f"{name}_median": usual},
                        f"{name} {_fmt(value)} is above {self.rule.factor:g}x its median "
                        f"{_fmt(usual)} so far",
                    )
        return None

    def remember(self, metrics: Mapping[str, float]) -> None:
        for name in self.rule.metrics:
            value = metrics.get(name)
            if value is not None and math.isfinite(value):
                self.history[name].append(value)


class ModeCollapseCheck(RuleCheck):
    rule: ModeCollapseRule

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        value = metrics.get(self.rule.metric)
        if value is None or not value < self.rule.min_ratio:  # NaN is the non_finite rule's
            return None
        return (
            {self.rule.metric: value},
            f"{self.rule.metric} {_fmt(value)} is below {self.rule.min_ratio:g}: samples are "
            "far less varied than the real data",
        )


class StalledCheck(RuleCheck):
    rule: StalledRule

    def __init__(self, rule: StalledRule, objective: str, maximize: bool) -> None:
        super().__init__(rule)
        self.objective = objective
        self.sign = -1.0 if maximize else 1.0
        self.best: float | None = None

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        value = metrics.get(self.objective)
        if value is None or not math.isfinite(value) or self.best is None:
            return None
        if self.sign * (self.best - value) > self.rule.min_delta:
            return None  # improved
        return (
            {self.objective: value, f"{self.objective}_best": self.best},
            f"{self.objective} {_fmt(value)} is no better than its best {_fmt(self.best)}",
        )

    def remember(self, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.objective)
        if value is not None and math.isfinite(value):
            if self.best is None or self.sign * (value - self.best) < 0:
                self.best = value


class _Best:
    """The first and the best value of one metric over a trial's evaluations."""

    def __init__(self, maximize: bool) -> None:
        self.sign = 1.0 if maximize else -1.0
        self.first: float | None = None
        self.best: float | None = None

    def add(self, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        if self.first is None:
            self.first = value
        if self.best is None or self.sign * (value - self.best) > 0:
            self.best = value

    def gain_over(self, floor: float) -> float:
        """How far the best lies above ``floor`` in the metric's good direction."""
        return -math.inf if self.best is None else self.sign * (self.best - floor)


class DeadObjectiveCheck(RuleCheck):
    """The objective still at its floor, the guide (if any) not yet ``guide_delta`` better than
    its first value, while some of the study's other trials (completed, pruned or running) had
    done better by this step. Past ``guide_until`` of the run's ``horizon`` (its last
    evaluation step, when known) the guide no longer spares it: a slow starter has had most of
    its run to leave the floor."""

    rule: DeadObjectiveRule

    def __init__(
        self,
        rule: DeadObjectiveRule,
        objective: str,
        maximize: bool,
        worst: float | None,
        guide_maximize: bool,
        peers: Peers | None,
        horizon: int | None = None,
    ) -> None:
        super().__init__(rule)
        self.horizon = horizon
        self.objective = objective
        self.sign = 1.0 if maximize else -1.0
        self.worst = worst
        self.peers = peers
        self.values = _Best(maximize)
        self.guide = _Best(guide_maximize)
        self.step = 0

    def observe(self, step: int, metrics: Mapping[str, float]) -> Verdict | None:
        self.step = step
        self.values.add(metrics.get(self.objective))  # this evaluation counts as well
        if self.rule.guide is not None:
            self.guide.add(metrics.get(self.rule.guide))
        return super().observe(step, metrics)

    @property
    def floor(self) -> float | None:
        return self.worst if self.worst is not None else self.values.first

    def moved(self) -> bool:
        floor = self.floor
        if floor is None or self.values.gain_over(floor) > self.rule.min_delta:
            return True
        first = self.guide.first
        return (
            not self.past_guide_grace()
            and first is not None
            and first != 0
            and (self.guide.gain_over(first) / abs(first) > self.rule.guide_delta)
        )

    def past_guide_grace(self) -> bool:
        return self.horizon is not None and self.step > self.rule.guide_until * self.horizon

    def condition(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], str] | None:
        value, floor = metrics.get(self.objective), self.floor
        if self.peers is None or value is None or not math.isfinite(value) or floor is None:
            return None
        if self.seen <= self.rule.warmup or self.moved():
            return None  # (during warmup the verdict would be ignored: spare the peers' read)
        better = [v for v in self.peers(self.step) if self.sign * (v - floor) > self.rule.min_delta]
        if not better:
            return None
        top = max(better, key=lambda v: self.sign * v)
        kind = "the worst it can be" if self.worst is not None else "its first value"
        guide, rule = "", self.rule
        if rule.guide is not None and self.past_guide_grace():
            guide = (
                f" by step {self.step} of {self.horizon} ({rule.guide}'s progress spares a "
                f"trial only for the first {rule.guide_until:.0%} of its run)"
            )
        elif rule.guide is not None:
            guide = f" and {rule.guide} is not {rule.guide_delta:.0%} better than at first"
        trials = f"{len(better)} other trial{'s' if len(better) != 1 else ''}"
        return {
            self.objective: value,
            f"{self.objective}_floor": floor,
            f"{self.objective}_peers_best": top,
            "peers_better": float(len(better)),
        }, (
            f"{self.objective} has not moved off {_fmt(floor)} ({kind}){guide}, while {trials} "
            f"had reached up to {_fmt(top)} by this step"
        )


@dataclass
class StabilityMonitor:
    """All of a study's rules following one trial. ``metric_specs`` gives each metric's
    direction and worst value (for ``dead_objective``); ``peers`` the study's other trials'
    best values by step (without it, ``dead_objective`` never fires)."""

    rules: Sequence[StabilityRule]
    objective: str
    direction: str
    watched: Collection[str] = ()
    metric_specs: Mapping[str, MetricSpec] = field(default_factory=dict)
    peers: Peers | None = None
    horizon: int | None = None
    """The run's last evaluation step, if known (``Trainer.evaluations``)."""
    checks: list[RuleCheck] = field(init=False)

    def __post_init__(self) -> None:
        self.checks = [self._check_for(rule) for rule in self.rules]

    def _check_for(self, rule: StabilityRule) -> RuleCheck:
        match rule:
            case NonFiniteRule():
                return NonFiniteCheck(rule, self.watched or (self.objective,))
            case DivergenceRule():
                return DivergenceCheck(rule)
            case DiscriminatorCollapseRule():
                return DiscriminatorCollapseCheck(rule)
            case GradientExplosionRule():
                return GradientExplosionCheck(rule)
            case ModeCollapseRule():
                return ModeCollapseCheck(rule)
            case StalledRule():
                return StalledCheck(rule, self.objective, self.direction == "maximize")
            case DeadObjectiveRule():
                spec = self.metric_specs.get(self.objective)
                guide = self.metric_specs.get(rule.guide) if rule.guide is not None else None
                return DeadObjectiveCheck(
                    rule,
                    self.objective,
                    self.direction == "maximize",
                    spec.worst if spec is not None else None,
                    guide is not None and guide.direction == "maximize",
                    self.peers,
                    self.horizon,
                )
        raise ValueError(f"no check for rule {rule!r}")

    def observe(self, step: int, metrics: Mapping[str, float]) -> Verdict | None:
        """Show every rule this evaluation; the first verdict, in rule order, stops the trial."""
        verdicts = [check.observe(step, metrics) for check in self.checks]
        return next((v for v in verdicts if v is not None), None)
