"""PruningScheduler on a real Optuna study: stability rules first, then the pruner, and a
record of what stopped each trial (Tune's side is a plain result dict, as Tune hands it)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState as OptunaTrialState
from ray.tune.schedulers import TrialScheduler

from service.scheduling.ledger import Ledger, TrialRecord
from service.scheduling.pruning import PruningScheduler
from service.scheduling.stability import RULE_ADAPTER, StabilityMonitor
from service.schemas.study import MedianPruner


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
