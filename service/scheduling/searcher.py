"""OptunaSearcher: a Ray Tune searcher that asks Optuna for configs and tells it outcomes.

Ray's own ``OptunaSearch`` cannot be used: it hard-codes Optuna's NopPruner and tells
COMPLETE for trials a scheduler stopped. Here a pruned trial is told PRUNED, so the sampler
learns from its intermediate values, and a failed one FAIL.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaTrialState
from ray.tune.search import Searcher

from gentune.service.config import Settings, export_data_root
from gentune.service.db.repository import Repository
from gentune.service.db.retry import retrying, transact
from gentune.service.scheduling.ledger import DriverSide, Ledger, TrialRecord
from gentune.service.scheduling.local_search import LocalSearchSampler
from gentune.service.scheduling.trial_settings import TrialSettings
from gentune.service.schemas.study import (
    ParamSpec,
    SamplerSpec,
    StudySpec,
)
from gentune.service.studies.space import distribution, grid_values
from gentune.service.studies.stability import (
    Peers,
    StabilityMonitor,
    resolve_rules,
    watched_metrics,
)
from gentune.service.studies.warm_start import ORIGIN
from gentune.trainers.base import Trainer

log = logging.getLogger(__name__)


CONSTRAINTS_ATTR = "gentune_constraints"
"""The Optuna user attribute holding a finished trial's constraint violations."""


def build_sampler(
    spec: SamplerSpec,
    search_space: dict[str, ParamSpec],
    seed_offset: int = 0,
    n_constraints: int = 0,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a spec names; ``seed_offset`` varies the seed on a resumed run.
    With constraints, the samplers that can use them (tpe, gp, nsga2, nsga3) steer away from
    infeasible regions; the others still record which trials are infeasible."""
    seed = None if spec.seed is None else spec.seed + seed_offset
    constraints = partial(_violations, n_constraints) if n_constraints else None
    match spec.type:
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "tpe":
            tpe = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=spec.n_startup_trials,
                multivariate=spec.multivariate,
                constant_liar=spec.constant_liar,
                constraints_func=constraints,
            )
            if spec.local_share == 0:
                return tpe
            return LocalSearchSampler(tpe, spec.local_share, spec.local_scale, seed)
        case "nsga2" | "nsga3":
            nsga = (
                optuna.samplers.NSGAIISampler
                if spec.type == "nsga2"
                else optuna.samplers.NSGAIIISampler
            )
            return nsga(
                seed=seed,
                population_size=spec.population_size,
                crossover_prob=spec.crossover_prob,
                mutation_prob=spec.mutation_prob,
                constraints_func=constraints,
            )
        case "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=spec.n_startup_trials, sigma0=spec.sigma0
            )
        case "qmc":
            return optuna.samplers.QMCSampler(
                seed=seed, qmc_type=spec.qmc_type, scramble=spec.scramble
            )
        case "gp":
            return optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=spec.n_startup_trials, constraints_func=constraints
            )
        case "grid":
            grid = {name: grid_values(dist) for name, dist in search_space.items()}
            return _GridSampler(grid, seed=seed)  # type: ignore[arg-type]
    raise ValueError(f"unknown sampler {spec.type}")


def _violations(n_constraints: int, trial: FrozenTrial) -> list[float]:
    """Optuna's constraints_func: the violations the searcher set before telling (at the
    trial's best step; a constrained metric it never reported counts as broken)."""
    return list(trial.user_attrs.get(CONSTRAINTS_ATTR, [0.0] * n_constraints))


def study_peers(study: optuna.Study, direction: str, exclude: int | None = None) -> Peers:
    """``dead_objective``'s view of ``study``: the best objective value each other trial
    (completed, pruned or still running) had reported up to a step. Read only when a trial's
    objective sits at its floor after warmup, not at every evaluation."""
    pick = max if direction == "maximize" else min
    states = (OptunaTrialState.COMPLETE, OptunaTrialState.PRUNED, OptunaTrialState.RUNNING)

    def peers(step: int) -> list[float]:
        trials = retrying(
            lambda: study.get_trials(deepcopy=False, states=states), "reading Optuna's trials"
        )
        found = []
        for trial in trials:
            if trial.number == exclude:
                continue
            values = [
                v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)
            ]
            if values:
                found.append(pick(values))
        return found

    return peers


def _tell_fail(trial: optuna.Trial) -> None:
    trial.study.tell(trial.number, state=OptunaTrialState.FAIL, skip_if_finished=True)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its ``Study.stop()`` when the grid runs out.

    ``Study.stop`` works only inside ``Study.optimize``; gentune caps a grid study's trials
    to the grid's size instead.
    """

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        return None


class OptunaSearcher(DriverSide, Searcher):
    def __init__(
        self,
        ledger: Ledger,
        study: optuna.Study,
        spec: StudySpec,
        trainer: Trainer,
        settings: Settings,
    ) -> None:
        super().__init__()
        self.trainer = trainer
        self.rules = resolve_rules(spec.stability, trainer)
        self.ledger = ledger
        self.study = study
        self.spec = spec
        self.database_url = settings.database_url
        self.artifact_dir = str(Path(settings.artifact_dir).resolve())
        self.data_dir = export_data_root(settings)
        self.distributions = {name: distribution(d) for name, d in spec.search_space.items()}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self._budget_allows_a_trial():
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune documents this
        optuna_trial = self._ask()
        params = dict(optuna_trial.params)
        origin = optuna_trial.user_attrs.get(ORIGIN)  # set on configs queued in advance
        pruning_study = self.ledger.pruning_study
        judged = retrying(pruning_study.ask, "asking Optuna") if pruning_study else None
        study_id, worker_id = self.ledger.study_id, self.ledger.worker_id

        def create(repo: Repository) -> int | None:
            if worker_id and not repo.owns_study(study_id, worker_id):
                return None
            return repo.create_trial(study_id, optuna_trial.number, params, trial_id, origin).id

        db_id = transact(self.database_url, create, "creating a trial")
        if db_id is None:  # taken over while this run was silent: the new run owns the budget
            for trial in (optuna_trial, judged):
                if trial is not None:
                    retrying(partial(_tell_fail, trial), "telling Optuna")
            log.warning("study %s: no longer this worker's; no new trials", study_id)
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune documents this
        self.ledger.trials[trial_id] = TrialRecord(
            db_id=db_id,
            optuna_trial=optuna_trial,
            monitor=self._monitor(params, (judged or optuna_trial).number),
            pruning_trial=judged,
        )
        retrying(lambda: optuna_trial.set_user_attr("gentune_trial_id", db_id), "telling Optuna")
        log.info(
            "study %s: trial %s started with %s%s",
            study_id,
            db_id,
            params,
            f" ({origin})" if origin else "",
        )
        return self._trial_settings(db_id).config(params)

    def _budget_allows_a_trial(self) -> bool:
        limit = self.spec.budget.max_evaluations
        if limit is None or self.ledger.budget_allows_a_trial(limit):
            return True
        log.info(
            "study %s: %d evaluations reported, the budget's %d: no new trials",
            self.ledger.study_id,
            self.ledger.evaluations,
            limit,
        )
        return False

    def _trial_settings(self, db_id: int) -> TrialSettings:
        return TrialSettings(
            study_id=self.ledger.study_id,
            trial_id=db_id,
            trainer=self.spec.trainer,
            fixed=self.spec.params,
            objective=self.ledger.objective,
            direction=self.ledger.direction,
            artifact_dir=self.artifact_dir,
            data_dir=self.data_dir,
            keep_best=self.spec.checkpoints.keep_best,
            keep_last=self.spec.checkpoints.keep_last,
        )

    def _ask(self) -> optuna.Trial:
        """``study.ask``, retried through outages. Optuna's ask is several commits, so a retry
        first fails the trial a broken attempt may have left RUNNING (else it would hold a
        grid point, or a constant liar's place, for ever)."""
        tries = 0

        def attempt() -> optuna.Trial:
            nonlocal tries
            tries += 1
            if tries > 1:
                ours = {record.optuna_trial.number for record in self.ledger.trials.values()}
                running = (OptunaTrialState.RUNNING,)
                for left in self.study.get_trials(deepcopy=False, states=running):
                    if left.number not in ours:
                        self.study.tell(
                            left.number, state=OptunaTrialState.FAIL, skip_if_finished=True
                        )
            return self.study.ask(self.distributions)

        return retrying(attempt, "asking Optuna")

    def _monitor(self, params: dict[str, Any], number: int) -> StabilityMonitor | None:
        """The trial's stability rules; ``number`` is its Optuna trial (in the study whose
        values ``dead_objective`` compares), left out of its own peers."""
        if not self.rules:
            return None
        trial_params = self.trainer.parse_params({**self.spec.params, **params})
        watched = watched_metrics(self.trainer, trial_params, self.ledger.objective)
        return StabilityMonitor(
            self.rules,
            self.ledger.objective,
            self.ledger.direction,
            watched,
            metric_specs=self.trainer.metrics,
            peers=study_peers(
                self.ledger.pruning_study or self.study, self.ledger.direction, exclude=number
            ),
            horizon=self.trainer.evaluations(trial_params),
        )

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the search state lives in Optuna's storage."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        record = self.ledger.trials.get(trial_id)
        if record is None:
            return
        record.finished = True
        self.ledger.longest = max(self.ledger.longest, record.last_step or 0)
        number = record.optuna_trial.number
        if error or record.error is not None:
            outcome: dict[str, Any] = {"state": OptunaTrialState.FAIL}
        elif record.prune_reason is not None:
            outcome = {"state": OptunaTrialState.PRUNED}
        elif record.best_value is not None:
            outcome = {"values": record.best_value}
        else:
            outcome = {"state": OptunaTrialState.FAIL}
        judged = record.pruning_trial
        if judged is not None:  # the primary objective's twin: its pruner's history
            retrying(
                lambda: judged.study.tell(judged.number, skip_if_finished=True, **outcome),
                "telling Optuna",
            )
        if self.ledger.objectives and "values" in outcome:
            values = self.ledger.values_of(record)
            outcome = {"values": values} if values is not None else {"state": OptunaTrialState.FAIL}
        if self.ledger.constraints:
            # Read by the sampler's constraints_func when it is told (> 0: infeasible).
            violations = [min(v, 1e12) for v in self.ledger.violations_of(record)]
            retrying(
                lambda: record.optuna_trial.set_user_attr(CONSTRAINTS_ATTR, violations),
                "telling Optuna",
            )
        retrying(
            lambda: self.study.tell(number, skip_if_finished=True, **outcome), "telling Optuna"
        )
