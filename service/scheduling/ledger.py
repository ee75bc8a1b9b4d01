"""What one study run knows about its live trials, shared by searcher, scheduler and recorder.

All three run in the study's driver process, on Tune's event loop thread, so plain dicts do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import optuna

from service.db.models import PruneRecord
from service.scheduling.stability import StabilityMonitor


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

    def restart(self) -> None:
        """Forget the lost attempt's evaluations: Ray runs the trial again from the start."""
        if self.last_step is not None:
            self.reported_until = max(self.last_step, self.reported_until or self.last_step)
        self.best_value = self.best_step = self.last_step = None
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


class DriverSide:
    """Mixin for Tune plug-ins that hold live Optuna and database handles.

    Tune pickles its experiment state for its own restore, which gentune does not use (a
    study resumes from gentune's database), so these objects pickle to an empty shell.
    """

    def __getstate__(self) -> dict[str, object]:
        return {}
