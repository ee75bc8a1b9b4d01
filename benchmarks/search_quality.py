"""Does tuning pay? gentune against the trainer's defaults and random search, on wide spaces.

The suite is ``search_spaces/untuned/``: definitions written as a person would before knowing
the answer (learning rates over three decades, every loss, ranges of batch sizes), never
narrowed after seeing results. For each space:

- defaults: one trial of the trainer's defaults with the space's fixed params;
- random: Optuna's random sampler for the space's budget, no pruner, no stability rules, no
  baseline trial: every trial trains to the end;
- gentune: the definition as written, so everything left at gentune's defaults (the
  defaults as its first trial, the default sampler, the trainer's pruner and rules);
- any ``--variant NAME=SAMPLER_JSON``: gentune with that sampler instead.

With ``--equal-compute`` the gentune methods get random search's trial-epochs as their budget
(``budget.max_evaluations``) instead of its number of trials: trials their pruning stops early
leave room for more trials.

Each runs through gentune's own study runner (a fresh SQLite database, a local Ray), with the
same budget and trial length for every method, for each sampler seed. A study's best is the
one the API reports (the best completed trial). Printed for each (space, seed): the values and
whether gentune's best is at least the defaults' and above random search's; then the share of
pairs where that holds, and the median improvement over the defaults.

    .venv/bin/python benchmarks/search_quality.py [--seeds 3] [--quick] [--equal-compute]
        [--space search_spaces/untuned/gan2d_ring8.yaml ...] [--variant gp='{"type": "gp"}']

--quick runs ring8 and the VAE with one seed and 8 trials (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from study_runs import Outcome, run_definition

from gentune.service.schemas.study import StudySpec
from gentune.service.studies.baseline import improvement
from gentune.service.studies.space import sampler_for
from gentune.trainers.registry import get_trainer

SUITE = sorted(str(p) for p in Path("search_spaces/untuned").glob("*.yaml"))
QUICK = ["search_spaces/untuned/gan2d_ring8.yaml", "search_spaces/untuned/vae_digits.yaml"]


@dataclass
class Method:
    name: str
    sampler: dict[str, Any] | None
    """None: the definition's own sampler (gentune's default when it names none)."""


def definition(raw: dict[str, Any], method: str, seed: int, trials: int | None) -> dict:
    spec = json.loads(json.dumps(raw))
    spec["name"] = f"{raw['name']}-{method}-{seed}"
    if trials is not None:
        spec["budget"] = {**spec.get("budget", {}), "n_trials": trials}
    return spec


def run_method(
    raw: dict[str, Any],
    method: Method,
    seed: int,
    trials: int | None,
    home: Path,
    equal_compute: bool = False,
) -> Outcome:
    spec = definition(raw, method.name, seed, trials)
    if equal_compute and method.name != "random":
        # Random search's trial-epochs as a compute budget: what pruning saves buys trials.
        budget = spec["budget"]
        budget["max_evaluations"] = budget["n_trials"] * int(spec["params"]["epochs"])
        budget["n_trials"] *= 10
    if method.name == "random":
        spec.update(
            sampler={"type": "random", "seed": seed},
            pruner={"type": "none"},
            stability={"defaults": False},
            baseline=False,
        )
    else:
        spec["sampler"] = {**(method.sampler or sampler_in_force(spec)), "seed": seed}
    return run_definition(spec, method.name, home)


def sampler_in_force(spec: dict[str, Any]) -> dict[str, Any]:
    """The sampler a study of ``spec`` runs: its own, the trainer's or gentune's default."""
    study = StudySpec.model_validate(spec)
    trainer = get_trainer(study.trainer)
    assert trainer is not None, f"no trainer {study.trainer}"
    return sampler_for(study, trainer).model_dump(exclude_none=True)


def run_defaults(raw: dict[str, Any], home: Path) -> Outcome:
    """The trainer's defaults, one trial, through the same runner (its baseline trial)."""
    spec = definition(raw, "defaults", 0, 1)
    spec.update(pruner={"type": "none"}, stability={"defaults": False}, baseline=True)
    return run_definition(spec, "defaults", home)


@dataclass
class Pair:
    space: str
    seed: int
    direction: str
    defaults: float
    random: float
    bests: dict[str, float]
    """Each gentune method's best."""
    dead: dict[str, int]
    """Each method's dead trials trained to the end (random search's too)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", nargs="+", default=None, help="Definitions (YAML).")
    parser.add_argument("--seeds", type=int, default=3, help="Sampler seeds 0..N-1.")
    parser.add_argument("--trials", type=int, default=None, help="Override every n_trials.")
    parser.add_argument("--quick", action="store_true", help="ring8 and vae, 1 seed, 8 trials.")
    parser.add_argument(
        "--equal-compute",
        action="store_true",
        help="Give gentune random search's trial-epochs (budget.max_evaluations) instead of "
        "its number of trials.",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help='Another gentune method: NAME=SAMPLER_JSON, e.g. gp=\'{"type": "gp"}\'.',
    )
    args = parser.parse_args()
    spaces = args.space or (QUICK if args.quick else SUITE)
    seeds = 1 if args.quick else args.seeds
    trials = 8 if args.quick and args.trials is None else args.trials
    methods = [Method("gentune", None)]
    for variant in args.variant:
        name, _, sampler = variant.partition("=")
        methods.append(Method(name, json.loads(sampler)))
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="gentune-search-quality-") as tmp:
        for space in spaces:
            raw = yaml.safe_load(Path(space).read_text())
            direction = raw["objective"]["direction"]
            defaults = _say(run_defaults(raw, Path(tmp)), space)
            for seed in range(seeds):
                random = _say(run_method(raw, Method("random", None), seed, trials, Path(tmp)))
                runs = {
                    m.name: _say(run_method(raw, m, seed, trials, Path(tmp), args.equal_compute))
                    for m in methods
                }
                bests = {name: outcome.best for name, outcome in runs.items()}
                dead = {name: outcome.dead for name, outcome in [("random", random), *runs.items()]}
                pairs.append(
                    Pair(Path(space).stem, seed, direction, defaults.best, random.best, bests, dead)
                )
    ray.shutdown()
    _report(pairs, [m.name for m in methods], time.perf_counter() - started)


def _say(outcome: Outcome, space: str | None = None) -> Outcome:
    if space is not None:
        print(f"\n{space}", flush=True)
    baseline = f", its defaults trial {outcome.baseline:.4g}" if outcome.baseline else ""
    print(
        f"  {outcome.method:10} best {outcome.best:.4g}{baseline}: {outcome.trials} trials "
        f"({outcome.pruned} pruned, {outcome.dead} dead ones trained to the end), "
        f"{outcome.epochs} trial-epochs, {outcome.seconds:.0f} s",
        flush=True,
    )
    return outcome


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def _report(pairs: list[Pair], methods: list[str], seconds: float) -> None:
    print(f"\n{'space':22} {'seed':>4} {'defaults':>9} {'random':>9}", end="")
    for name in methods:
        print(f" {name:>9} {'>=def':>5} {'>rand':>5} {'vs def':>7}", end="")
    print()
    for pair in pairs:
        print(f"{pair.space:22} {pair.seed:>4} {pair.defaults:>9.4g} {pair.random:>9.4g}", end="")
        for name in methods:
            best = pair.bests[name]
            at_least = _yes(not _better(pair.defaults, best, pair.direction))
            above = _yes(_better(best, pair.random, pair.direction))
            gain = improvement(best, pair.defaults, pair.direction)
            gain_words = f"{gain:+.0%}" if gain is not None else "-"
            print(f" {best:>9.4g} {at_least:>5} {above:>5} {gain_words:>7}", end="")
        print()
    print(f"\n{len(pairs)} (space, seed) pairs, {seconds / 60:.0f} min in all")
    for name in methods:
        kept = sum(not _better(p.defaults, p.bests[name], p.direction) for p in pairs)
        beats = sum(_better(p.bests[name], p.random, p.direction) for p in pairs)
        gains = [improvement(p.bests[name], p.defaults, p.direction) for p in pairs]
        finite = [g for g in gains if g is not None and math.isfinite(g)]
        median = f"{statistics.median(finite):+.1%}" if finite else "-"
        print(
            f"  {name}: best >= defaults in {kept}/{len(pairs)}, > random search in "
            f"{beats}/{len(pairs)}; median improvement over the defaults {median}; "
            f"{sum(p.dead[name] for p in pairs)} dead trials trained to the end"
        )
    dead = sum(p.dead["random"] for p in pairs)
    print(f"  random search: {dead} dead trials trained to the end (it prunes nothing)")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    main()
