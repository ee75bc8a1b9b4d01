"""What one study run knows about its live trials, shared by searcher, scheduler and recorder.

All three run in the study's driver process, on Tune's event loop thread, so plain dicts do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import optuna

from gentune.service.db.models import PruneRecord
from gentune.service.schemas.study import Constraint
from gentune.service.studies.stability import StabilityMonitor


@dataclass
class TrialRecord:
    db_id: int
    optuna_trial: optuna.Trial
    best_value: float | None = None
    best_step: int | None = None
    last_step: int | None = None
    monitor: StabilityMonitor | None = None
    prune_reason: str | None = None
    prune: PruneRecord | None = None
    error: str | None = None
    """The trainer's exception, when it raised one."""
    reported_until: int | None = None
    """After a restart: the last step an earlier attempt reported to Optuna. Optuna keeps the
    first value reported at a step, so steps up to this one are not judged by its pruner."""
    pruning_trial: optuna.Trial | None = None
    """In a multi-objective study, the trial's twin in the primary objective's study, where
    its pruner judges it (Optuna's pruners judge one objective); else the trial itself."""
    best_metrics: dict[str, float] = field(default_factory=dict)
    """The objectives' and constraints' metrics at the primary objective's best step."""
    finished: bool = False

    @property
    def judged(self) -> optuna.Trial:
        """The Optuna trial that gets the primary objective's intermediate values."""
        return self.pruning_trial if self.pruning_trial is not None else self.optuna_trial

    def restart(self) -> None:
        """Forget the lost attempt's evaluations: Ray runs the trial again from the start."""
        if self.last_step is not None:
            self.reported_until = max(self.last_step, self.reported_until or self.last_step)
        self.best_value = self.best_step = self.last_step = None
        self.best_metrics = {}
        if self.monitor is not None:
            self.monitor = replace(self.monitor)  # fresh rule state, same rules

    def observe(self, step: int, value: float, direction: str) -> bool:
        """Note the objective at ``step``; True when it is the trial's best so far."""
        self.last_step = step
        if not math.isfinite(value):
            return False
        better = self.best_value is None or (
            value > self.best_value if direction == "maximize" else value < self.best_value
        )
        if better:
            self.best_value, self.best_step = value, step
        return better


@dataclass
class Ledger:
    study_id: int
    objective: str
    direction: str
    worker_id: str = ""
    """The worker this run belongs to: new trials are created only while it owns the study."""
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    """By Tune trial id."""
    objectives: list[tuple[str, str]] = field(default_factory=list)
    """(metric, direction) of each objective of a multi-objective study; empty otherwise."""
    constraints: list[Constraint] = field(default_factory=list)
    pruning_study: optuna.Study | None = None
    """A multi-objective study's twin for its primary objective (see TrialRecord)."""
    evaluations: int = 0
    """Evaluations the study's trials have reported so far (for ``budget.max_evaluations``)."""
    longest: int = 0
    """Evaluations of the longest trial that has finished in this run (0 before one has)."""

    def budget_allows_a_trial(self, max_evaluations: int) -> bool:
        """Whether a trial as long as the longest so far still fits in ``max_evaluations``,
        with the evaluations already reported and those the running trials may still report
        (each up to the longest's length)."""
        if self.longest == 0:  # no trial has finished: nothing to measure a trial by yet
            return self.evaluations < max_evaluations
        running = [r for r in self.trials.values() if not r.finished]
        reserve = sum(max(0, self.longest - (r.last_step or 0)) for r in running)
        return self.evaluations + reserve + self.longest <= max_evaluations

    @property
    def tracked(self) -> list[str]:
        """Metrics kept at each trial's best step: objectives and constrained ones."""
        return [m for m, _ in self.objectives] + [c.metric for c in self.constraints]

    def values_of(self, record: TrialRecord) -> list[float] | None:
        """A multi-objective trial's objective values at its best step (None if one lacks a
        finite value; then it is no point of the Pareto front)."""
        values = [record.best_metrics.get(metric) for metric, _ in self.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values if v is not None]

    def violations_of(self, record: TrialRecord) -> list[float]:
        """How far each constraint is broken at the trial's best step (0: kept)."""
        return [c.violation(record.best_metrics.get(c.metric)) for c in self.constraints]

    def feasible(self, record: TrialRecord) -> bool | None:
        """None without constraints or before a best step; else whether all are kept."""
        if not self.constraints or record.best_step is None:
            return None
        return all(v <= 0 for v in self.violations_of(record))


class DriverSide:
    """Mixin for Tune plug-ins that hold live Optuna and database handles.

    Tune pickles its experiment state for its own restore, which gentune does not use (a
    study resumes from gentune's database), so these objects pickle to an empty shell.
    """

    def __getstate__(self) -> dict[str, object]:
        return {}
