"""Does pruning save compute? Random search, ASHA and gentune's defaults on one search space.

For each repeat (a sampler seed), the same study definition runs three ways through gentune's
own runner, on a fresh SQLite database and a local Ray, one trial at a time:

- random: Optuna's random sampler, no pruner, no stability rules; every trial trains to the end;
- asha: the same random configs under Ray Tune's ASHA scheduler (grace 1 epoch, reduction 3);
- gentune: the definition's sampler, pruner and stability rules left at gentune's defaults
  (the trainer's defaults as the first trial, TPE, median pruner, the trainer's default rules).

Printed for each: the best objective reached, the trial-epochs and wall time spent in all,
and the trial-epochs and wall time spent until the study first reached the best value random
search found (an evaluation counts once it is recorded, in the order recorded). Then the
ratios to random search, summed over every (space, seed) pair.

    .venv/bin/python benchmarks/pruning.py [--space A.yaml B.yaml] [--repeats 3] [--trials N]

By default: search_spaces/gan2d_ring8_wide.yaml and search_spaces/untuned/gan2d_grid25.yaml,
sampler seeds 0, 1 and 2.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from study_runs import Outcome, run_definition

from gentune.service.db.models import PruneRecord
from gentune.service.scheduling.ledger import Ledger

METHODS = ("random", "asha", "gentune")
SPACES = ["search_spaces/gan2d_ring8_wide.yaml", "search_spaces/untuned/gan2d_grid25.yaml"]


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


def definition(raw: dict[str, Any], method: str, seed: int, trials: int | None) -> dict:
    spec = {k: v for k, v in raw.items() if k not in ("sampler", "pruner", "stability")}
    spec["name"] = f"{raw['name']}-{method}-{seed}"
    spec["budget"] = {**raw.get("budget", {}), "max_concurrent": 1}
    if trials is not None:
        spec["budget"]["n_trials"] = trials
    spec["baseline"] = method == "gentune"  # random search is random search: no defaults first
    if method == "gentune":
        spec["sampler"] = {"type": "tpe", "seed": seed}
    else:
        spec["sampler"] = {"type": "random", "seed": seed}
        spec["pruner"] = {"type": "none"}
        spec["stability"] = {"defaults": False}
    return spec


def run(method: str, raw: dict, seed: int, trials: int | None, home: Path) -> Outcome:
    spec = definition(raw, method, seed, trials)
    factory = None
    if method == "asha":
        epochs = int(spec["params"].get("epochs", 1))

        def factory(ledger: Ledger, _study: optuna.Study) -> TrialScheduler:
            return RecordingASHA(ledger, epochs)

    return run_definition(spec, method, home, factory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", nargs="+", default=SPACES, help="Study definitions (YAML).")
    parser.add_argument("--repeats", type=int, default=3, help="Sampler seeds 0..N-1.")
    parser.add_argument("--trials", type=int, default=None, help="Override n_trials.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    totals: dict[str, list[float]] = {m: [0.0, 0.0] for m in METHODS}
    reached_all = {m: True for m in totals}
    with tempfile.TemporaryDirectory(prefix="gentune-pruning-") as tmp:
        for space in args.space:
            raw = yaml.safe_load(Path(space).read_text())
            for seed in range(args.repeats):
                print(f"\nrepeat {seed + 1}/{args.repeats} (sampler seed {seed}), {space}")
                outcomes = [_timed(method, raw, seed, args.trials, Path(tmp)) for method in METHODS]
                maximize = raw["objective"]["direction"] == "maximize"
                for method, epochs, seconds, reached in _to_target(outcomes, maximize):
                    totals[method][0] += epochs
                    totals[method][1] += seconds
                    reached_all[method] &= reached
    base_epochs, base_seconds = totals["random"]
    pairs = len(args.space) * args.repeats
    print(f"\nover {pairs} (space, seed) pairs, to reach random search's best:")
    for method, (epochs, seconds) in totals.items():
        note = "" if reached_all[method] else " (not reached in every pair: all it spent)"
        print(
            f"  {method:8} {epochs:>6.0f} trial-epochs "
            f"({epochs / base_epochs:.2f}x random), {seconds:>6.0f} s "
            f"({seconds / base_seconds:.2f}x){note}"
        )
    ray.shutdown()


def _timed(method: str, raw: dict, seed: int, trials: int | None, home: Path) -> Outcome:
    started = time.perf_counter()
    outcome = run(method, raw, seed, trials, home)
    print(
        f"  {method}: {outcome.trials} trials ({outcome.pruned} pruned), best "
        f"{outcome.best:.4g}, {outcome.epochs} trial-epochs, "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return outcome


def _to_target(outcomes: list[Outcome], maximize: bool) -> list[tuple[str, int, float, bool]]:
    """Print and return each method's trial-epochs and seconds to random search's best (the
    first outcome's), and whether it got there (if not: all it spent)."""
    target = outcomes[0].best
    print(f"  target: random search's best, {target:.4g}")
    print(f"  {'method':8} {'best':>9} {'epochs to target':>17} {'s to target':>12}")
    spent = []
    for outcome in outcomes:
        reached = outcome.reach(target, maximize)
        if reached is None:
            epochs, seconds = outcome.epochs, outcome.seconds
            said = f"{'not reached':>17} {'-':>12}"
        else:
            epochs, seconds = reached
            said = f"{epochs:>17} {seconds:>12.0f}"
        spent.append((outcome.method, epochs, seconds, reached is not None))
        print(f"  {outcome.method:8} {outcome.best:>9.4g} {said}")
    return spent


if __name__ == "__main__":
    main()
