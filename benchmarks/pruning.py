"""Does pruning save compute? Random search, ASHA and gentune's defaults on one search space.

For each repeat (a sampler seed), the same study definition runs three ways through gentune's
own runner, on a fresh SQLite database and a local Ray, one trial at a time:

- random: Optuna's random sampler, no pruner, no stability rules; every trial trains to the end;
- asha: the same random configs under Ray Tune's ASHA scheduler (grace 1 epoch, reduction 3);
- gentune: the definition's sampler, pruner and stability rules left at gentune's defaults
  (TPE, median pruner, the trainer's default rules).

Printed for each: the best objective reached, the trial-epochs and wall time spent in all,
and the trial-epochs and wall time spent until the study first reached the best value random
search found (an evaluation counts once it is recorded, in the order recorded). Then the
ratios to random search, summed over the repeats.

    .venv/bin/python benchmarks/pruning.py [--space search_spaces/gan2d_ring8_wide.yaml]
        [--repeats 2] [--trials N]
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from sqlalchemy import select

from service.config import Settings
from service.db.models import Metric, PruneRecord, Study, Trial
from service.db.repository import Repository
from service.db.session import migrate, session_scope
from service.scheduling.ledger import Ledger
from service.scheduling.runner import run_study
from service.schemas.study import StudySpec
from service.studies import resolved_definition, validate_spec


class RecordingASHA(ASHAScheduler):
    """Ray Tune's ASHA, with gentune's record of each trial it stops early."""

    def __init__(self, ledger: Ledger, max_t: int) -> None:
        mode = "max" if ledger.direction == "maximize" else "min"
        super().__init__(
            time_attr="step",
            metric=f"metrics/{ledger.objective}",
            mode=mode,
            max_t=max_t,
            grace_period=1,
            reduction_factor=3,
        )
        self.ledger = ledger
        self.max_t = max_t

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        record = self.ledger.trials.get(trial.trial_id)
        step = int(result.get("step", 0))
        value = result.get(f"metrics/{self.ledger.objective}")
        if record is not None and value is not None:
            record.observe(step, float(value), self.ledger.direction)
        if decision == TrialScheduler.STOP and record is not None and step < self.max_t:
            record.prune = PruneRecord("pruner/asha", step, {self.ledger.objective: value})
            record.prune_reason = f"asha stopped it at step {step}"
        return decision


@dataclass
class Outcome:
    method: str
    best: float
    epochs: int
    seconds: float
    trials: int
    pruned: int
    history: list[tuple[float, float]]
    """(seconds since the study started, objective) for each evaluation, in recorded order."""

    def reach(self, target: float, maximize: bool) -> tuple[int, float] | None:
        """Trial-epochs and seconds spent when the objective first reached ``target``."""
        for i, (seconds, value) in enumerate(self.history, start=1):
            if math.isfinite(value) and (value >= target if maximize else value <= target):
                return i, seconds
        return None


def definition(raw: dict[str, Any], method: str, seed: int, trials: int | None) -> dict:
    spec = {k: v for k, v in raw.items() if k not in ("sampler", "pruner", "stability")}
    spec["name"] = f"{raw['name']}-{method}-{seed}"
    spec["budget"] = {**raw.get("budget", {}), "max_concurrent": 1}
    if trials is not None:
        spec["budget"]["n_trials"] = trials
    if method == "gentune":
        spec["sampler"] = {"type": "tpe", "seed": seed}
    else:
        spec["sampler"] = {"type": "random", "seed": seed}
        spec["pruner"] = {"type": "none"}
        spec["stability"] = {"defaults": False}
    return spec


def run(method: str, raw: dict, seed: int, trials: int | None, home: Path) -> Outcome:
    settings = Settings(
        database_url=f"sqlite:///{home / f'{method}-{seed}.db'}",
        artifact_dir=str(home / "artifacts"),
    )
    migrate(settings.database_url)
    spec = StudySpec.model_validate(definition(raw, method, seed, trials))
    trainer = validate_spec(spec, settings)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        study_id = repo.create_study(spec.name, spec.trainer, resolved_definition(spec, trainer)).id
        repo.claim_next_study("bench")
    factory = None
    if method == "asha":
        epochs = int(spec.params.get("epochs", 1))

        def factory(ledger: Ledger, _study: optuna.Study) -> TrialScheduler:
            return RecordingASHA(ledger, epochs)

    run_study(study_id, "bench", settings, scheduler_factory=factory)
    objective = spec.objective.metric
    with session_scope(settings.database_url) as session:
        study = session.get(Study, study_id)
        assert study is not None and study.started_at is not None
        started = study.started_at
        rows = session.execute(
            select(Metric.created_at, Metric.value)
            .join(Trial, Trial.id == Metric.trial_id)
            .where(Trial.study_id == study_id, Metric.name == objective)
            .order_by(Metric.created_at, Metric.id)
        ).all()
        counts = Repository(session).trial_counts(study_id)
        finished = study.finished_at or rows[-1][0]
    history = [
        (
            (at.replace(tzinfo=None) - started.replace(tzinfo=None)).total_seconds(),
            math.nan if value is None else value,
        )
        for at, value in rows
    ]
    values = [v for _, v in history if math.isfinite(v)]
    maximize = spec.objective.direction == "maximize"
    return Outcome(
        method,
        (max(values) if maximize else min(values)) if values else math.nan,
        len(history),
        (finished.replace(tzinfo=None) - started.replace(tzinfo=None)).total_seconds(),
        sum(counts.values()),
        counts["pruned"],
        history,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="search_spaces/gan2d_ring8_wide.yaml")
    parser.add_argument("--repeats", type=int, default=2, help="Sampler seeds 0..N-1.")
    parser.add_argument("--trials", type=int, default=None, help="Override n_trials.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raw = yaml.safe_load(Path(args.space).read_text())
    maximize = raw["objective"]["direction"] == "maximize"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    totals: dict[str, list[float]] = {m: [0.0, 0.0] for m in ("random", "asha", "gentune")}
    reached_all = {m: True for m in totals}
    with tempfile.TemporaryDirectory(prefix="gentune-pruning-") as tmp:
        for seed in range(args.repeats):
            print(f"\nrepeat {seed + 1}/{args.repeats} (sampler seed {seed}), {args.space}")
            outcomes = []
            for method in ("random", "asha", "gentune"):
                started = time.perf_counter()
                outcome = run(method, raw, seed, args.trials, Path(tmp))
                print(
                    f"  {method}: {outcome.trials} trials ({outcome.pruned} pruned), best "
                    f"{outcome.best:.4g}, {outcome.epochs} trial-epochs, "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                outcomes.append(outcome)
            target = outcomes[0].best
            print(f"  target: random search's best, {target:.4g}")
            print(f"  {'method':8} {'best':>9} {'epochs to target':>17} {'s to target':>12}")
            for outcome in outcomes:
                reached = outcome.reach(target, maximize)
                if reached is None:
                    reached_all[outcome.method] = False
                    epochs, seconds = outcome.epochs, outcome.seconds
                    said = f"{'not reached':>17} {'-':>12}"
                else:
                    epochs, seconds = reached
                    said = f"{epochs:>17} {seconds:>12.0f}"
                totals[outcome.method][0] += epochs
                totals[outcome.method][1] += seconds
                print(f"  {outcome.method:8} {outcome.best:>9.4g} {said}")
    base_epochs, base_seconds = totals["random"]
    print(f"\nover {args.repeats} repeats, to reach random search's best:")
    for method, (epochs, seconds) in totals.items():
        note = "" if reached_all[method] else " (not reached in every repeat: all it spent)"
        print(
            f"  {method:8} {epochs:>6.0f} trial-epochs ({epochs / base_epochs:.2f}x random), "
            f"{seconds:>6.0f} s ({seconds / base_seconds:.2f}x){note}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
