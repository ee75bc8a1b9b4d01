"""PruningScheduler on a real Optuna study: stability rules first, then the pruner, and a
record of what stopped each trial (Tune's side is a plain result dict, as Tune hands it)."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState as OptunaTrialState
from ray.tune.schedulers import TrialScheduler

from gentune.service.scheduling.ledger import Ledger, TrialRecord
from gentune.service.scheduling.pruning import PruningScheduler
from gentune.service.scheduling.searcher import study_peers
from gentune.service.schemas.study import MedianPruner, NoPruner
from gentune.service.studies.stability import RULE_ADAPTER, StabilityMonitor
from gentune.trainers.base import MetricSpec


def setup() -> tuple[PruningScheduler, optuna.Study, Ledger]:
    study = optuna.create_study(
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    ledger = Ledger(study_id=1, objective="fid", direction="minimize")
    scheduler = PruningScheduler(ledger, study, MedianPruner(type="median", n_startup_trials=1))
    return scheduler, study, ledger


def start(study: optuna.Study, ledger: Ledger, tune_id: str, rules: list[dict]) -> TrialRecord:
    record = TrialRecord(
        db_id=len(ledger.trials) + 1,
        optuna_trial=study.ask(),
        monitor=StabilityMonitor(
            [RULE_ADAPTER.validate_python(r) for r in rules], "fid", "minimize", ("fid", "loss")
        ),
    )
    ledger.trials[tune_id] = record
    return record


def result(step: int, **metrics: float) -> dict:
    return {"step": step, **{f"metrics/{k}": v for k, v in metrics.items()}}


def test_a_stability_rule_stops_the_trial_and_optuna_keeps_its_last_value() -> None:
    rules = [{"type": "non_finite"}, {"type": "divergence", "metrics": ["loss"], "patience": 1}]
    scheduler, study, ledger = setup()
    record = start(study, ledger, "a", rules)
    trial = SimpleNamespace(trial_id="a")
    assert scheduler.on_trial_result(None, trial, result(1, fid=900.0, loss=2.0)) == "CONTINUE"
    decision = scheduler.on_trial_result(None, trial, result(2, fid=800.0, loss=9.0))
    assert decision == TrialScheduler.STOP
    assert record.prune is not None
    assert (record.prune.by, record.prune.step) == ("stability/divergence", 2)
    assert record.prune.values == {"loss": 9.0, "loss_running_min": 2.0}
    assert record.prune_reason is not None and record.prune_reason.startswith("divergence at")
    study.tell(record.optuna_trial.number, state=OptunaTrialState.PRUNED)
    frozen = study.trials[0]
    assert frozen.intermediate_values == {1: 900.0, 2: 800.0}
    assert frozen.user_attrs["gentune_pruned_by"] == "stability/divergence"


def test_a_non_finite_objective_is_reported_as_nan_so_tpe_ranks_it_worst() -> None:
    rules = [{"type": "non_finite"}]
    scheduler, study, ledger = setup()
    record = start(study, ledger, "a", rules)
    decision = scheduler.on_trial_result(
        None, SimpleNamespace(trial_id="a"), result(1, fid=math.inf, loss=1.0)
    )
    assert decision == TrialScheduler.STOP
    assert record.prune is not None and record.prune.values == {"fid": math.inf}
    assert math.isnan(study.trials[0].intermediate_values[1])


def test_the_pruner_decides_when_no_rule_fires_and_is_recorded_as_such() -> None:
    scheduler, study, ledger = setup()
    first = start(study, ledger, "a", [])
    scheduler.on_trial_result(None, SimpleNamespace(trial_id="a"), result(1, fid=100.0))
    study.tell(first.optuna_trial.number, 100.0)
    second = start(study, ledger, "b", [])
    decision = scheduler.on_trial_result(None, SimpleNamespace(trial_id="b"), result(1, fid=500.0))
    assert decision == TrialScheduler.STOP
    assert second.prune is not None
    assert (second.prune.by, second.prune.step) == ("pruner/median", 1)
    assert second.prune.values == {"fid": 500.0, "fid_best": 500.0}
    assert second.prune_reason is not None and "median pruner at step 1" in second.prune_reason


def _dead_rule(study: optuna.Study, trial: optuna.Trial) -> StabilityMonitor:
    """dead_objective alone (warmup 1) on mode_score, whose worst value is 0, judging
    ``trial`` against the study's other trials."""
    return StabilityMonitor(
        [RULE_ADAPTER.validate_python({"type": "dead_objective", "warmup": 1})],
        "mode_score",
        "maximize",
        metric_specs={"mode_score": MetricSpec("", "maximize", worst=0.0)},
        peers=study_peers(study, "maximize", exclude=trial.number),
    )


def test_a_dead_trial_is_stopped_though_the_median_pruner_sees_a_tie() -> None:
    """Most trials of a wide space sit at mode_score 0: the median of the completed trials at
    a step is 0, and the median pruner keeps a trial at 0 (not worse than the median). The
    dead_objective rule, reading the completed trials from the real Optuna study, stops it."""
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    ledger = Ledger(study_id=1, objective="mode_score", direction="maximize")
    scheduler = PruningScheduler(ledger, study, MedianPruner(type="median", n_startup_trials=1))

    def start_trial(tune_id: str) -> TrialRecord:
        trial = study.ask()
        record = TrialRecord(
            db_id=len(ledger.trials) + 1, optuna_trial=trial, monitor=_dead_rule(study, trial)
        )
        ledger.trials[tune_id] = record
        return record

    def run(tune_id: str, values: list[float]) -> str:
        decision = TrialScheduler.CONTINUE
        for step, value in enumerate(values, start=1):
            decision = scheduler.on_trial_result(
                None, SimpleNamespace(trial_id=tune_id), result(step, mode_score=value)
            )
            if decision == TrialScheduler.STOP:
                break
        return decision

    for tune_id, values in (
        ("zero-a", [0.0] * 4),
        ("zero-b", [0.0] * 4),
        ("good", [0, 0.2, 0.6, 0.8]),
    ):
        record = start_trial(tune_id)
        assert run(tune_id, values) == TrialScheduler.CONTINUE
        study.tell(record.optuna_trial.number, max(values))
    dead = start_trial("dead")
    assert run("dead", [0.0] * 4) == TrialScheduler.STOP
    assert dead.prune is not None
    assert (dead.prune.by, dead.prune.step) == ("stability/dead_objective", 3)
    assert dead.prune.values["mode_score_peers_best"] == 0.6
    assert dead.prune_reason is not None and "1 other trial had reached up to 0.6" in (
        dead.prune_reason
    )
    # The median pruner alone would have let it run: at each step it ties the median.
    others = [t.intermediate_values for t in study.get_trials(states=(OptunaTrialState.COMPLETE,))]
    assert all(statistics.median(v[step] for v in others) == 0.0 for step in (1, 2, 3))


def test_a_dead_trial_is_judged_against_trials_still_running_beside_it() -> None:
    """Two trials start together, before any has completed: the one at mode_score 0 is stopped
    once the other, still running, has done better by the same step (for the rule's patience
    of 2 evaluations); beside a peer as dead as itself it runs on."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    ledger = Ledger(study_id=1, objective="mode_score", direction="maximize")
    scheduler = PruningScheduler(ledger, study, NoPruner(type="none"))
    records = {}
    for tune_id in ("dead", "good", "also-dead"):
        trial = study.ask()
        monitor = _dead_rule(study, trial)
        records[tune_id] = TrialRecord(db_id=trial.number + 1, optuna_trial=trial, monitor=monitor)
    ledger.trials = dict(records)

    def step(tune_id: str, n: int, value: float) -> str:
        return scheduler.on_trial_result(
            None, SimpleNamespace(trial_id=tune_id), result(n, mode_score=value)
        )

    # "dead" and "also-dead" at 0 through step 3: neither is better than the other.
    for n in (1, 2, 3):
        assert step("dead", n, 0.0) == TrialScheduler.CONTINUE
        assert step("also-dead", n, 0.0) == TrialScheduler.CONTINUE
    assert records["dead"].prune is None
    # "good" (running, never told to Optuna) reaches 0.4 by step 2.
    for n, value in ((1, 0.1), (2, 0.4)):
        assert step("good", n, value) == TrialScheduler.CONTINUE
    assert study.trials[1].state == OptunaTrialState.RUNNING
    assert step("dead", 4, 0.0) == TrialScheduler.CONTINUE
    assert step("dead", 5, 0.0) == TrialScheduler.STOP
    dead = records["dead"]
    assert dead.prune is not None and dead.prune.by == "stability/dead_objective"
    assert dead.prune.values["mode_score_peers_best"] == 0.4
    assert dead.prune_reason is not None and "1 other trial had reached up to 0.4" in (
        dead.prune_reason
    )


def test_a_compute_budget_admits_a_trial_only_while_a_whole_one_still_fits() -> None:
    study = optuna.create_study()
    ledger = Ledger(study_id=1, objective="fid", direction="minimize")
    assert ledger.budget_allows_a_trial(10), "before any trial finishes, the budget not reached"
    done = TrialRecord(db_id=1, optuna_trial=study.ask(), last_step=4, finished=True)
    running = TrialRecord(db_id=2, optuna_trial=study.ask(), last_step=1)
    ledger.trials = {"a": done, "b": running}
    ledger.longest, ledger.evaluations = 4, 5
    # 5 reported, the running trial may report 3 more and a new one 4: 12 in all.
    assert ledger.budget_allows_a_trial(12)
    assert not ledger.budget_allows_a_trial(11)
    running.finished = True  # it was pruned after 1 evaluation: nothing more to reserve
    assert ledger.budget_allows_a_trial(9) and not ledger.budget_allows_a_trial(8)
