"""How well the default stability rules tell broken training from healthy training.

A labelled set of runs of the built-in trainers: configs that blow up, whose discriminator
wins outright, whose gradients explode or whose samples collapse, and healthy ones, slow
starters among them. Every run trains to the end with nothing stopped, its metrics are kept,
and then each trainer's default rules (the same ``StabilityMonitor`` the pruning scheduler
runs) are replayed over the histories (``dead_objective`` compares each run with the other
runs of its trainer on the same data, as if they were a study's completed trials). Printed:
each run with its label, how it ended and the first rule that would have stopped it; then
each rule's precision and recall, a healthy run stopped counting against the rule, and the
epochs the rules would have saved.

    .venv/bin/python benchmarks/stability.py [--jobs 2] [--only gan2d,dcgan] [--fresh]

The histories are kept in .gentune/bench/stability-histories.json; later runs replay the
rules over them without training again unless --fresh is given.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gentune.service.schemas.study import StabilityRule
from gentune.service.studies.stability import StabilityMonitor, default_rules, watched_metrics
from gentune.trainers.registry import get_trainer

HISTORIES = Path(".gentune/bench/stability-histories.json")


@dataclass(frozen=True)
class LabelledRun:
    name: str
    trainer: str
    params: dict[str, Any]
    label: str
    """healthy, or the way the run is expected to fail."""
    objective: str
    direction: str

    @property
    def healthy(self) -> bool:
        return self.label.startswith("healthy")


def _runs() -> list[LabelledRun]:
    gan2d = {"epochs": 20}
    dcgan = {"epochs": 10}
    vae = {"epochs": 8}
    ddpm = {"epochs": 4}

    def g2(name: str, label: str, **params: Any) -> LabelledRun:
        return LabelledRun(
            f"gan2d/{name}", "gan2d", {**gan2d, **params}, label, "mode_score", "maximize"
        )

    def img(trainer: str, base: dict[str, Any]) -> Callable[..., LabelledRun]:
        def make(name: str, label: str, **params: Any) -> LabelledRun:
            return LabelledRun(
                f"{trainer}/{name}", trainer, {**base, **params}, label, "fid", "minimize"
            )

        return make

    dc, va, dd = img("dcgan", dcgan), img("vae", vae), img("ddpm", ddpm)
    return [
        g2("defaults", "healthy"),
        g2("defaults-seed1", "healthy", seed=1),
        g2("slow-lr", "healthy (slow starter)", lr_g=1e-4, lr_d=2e-4),
        g2("beta1-0.9", "mode collapse", beta1=0.9, lr_g=2e-4, lr_d=2e-4),
        g2("hinge", "healthy", loss="hinge"),
        g2(
            "late-escape",
            "healthy (escapes a collapse late)",
            epochs=30,
            lr_g=2.5e-3,
            lr_d=1.8e-3,
            z_dim=9,
        ),
        g2("wgan-gp", "healthy (slow starter)", loss="wgan-gp", n_critic=5, lr_g=1e-4, lr_d=1e-4),
        g2("grid25-batch64", "healthy", dataset="grid25", batch_size=64),
        g2("lr-0.3", "divergence", lr_g=0.3, lr_d=0.3),
        g2("lr-0.05-beta1-0.9", "divergence", lr_g=0.05, lr_d=0.05, beta1=0.9),
        g2("strong-d", "discriminator collapse", lr_g=1e-5, lr_d=1e-2, n_critic=5),
        g2("wgan-no-gp", "gradient explosion", loss="wgan-gp", gp_weight=0.0, lr_d=5e-3),
        g2("z1-lr-0.02", "mode collapse", z_dim=1, lr_g=0.02, lr_d=0.002),
        dc("defaults", "healthy"),
        dc("classic-2e-4", "healthy (slow starter)", lr_g=2e-4, lr_d=2e-4),
        dc("hinge-sn", "healthy", loss="hinge", spectral_norm=True),
        dc("lsgan", "healthy", loss="lsgan"),
        dc("wgan-gp", "healthy (slow starter)", loss="wgan-gp", n_critic=2, lr_g=2e-4),
        dc("lr-0.05", "healthy (loud: huge early losses)", lr_g=0.05, lr_d=0.05),
        dc("strong-d", "discriminator collapse", lr_g=1e-5, lr_d=5e-3, n_critic=3),
        dc("wgan-no-gp", "gradient explosion", loss="wgan-gp", gp_weight=0.0, lr_d=2e-3),
        dc("lr-g-0.02", "mode collapse", lr_g=0.02, beta1=0.9),
        va("defaults", "healthy"),
        va("slow-lr", "healthy (slow starter)", lr=1e-4),
        va("lr-0.05", "divergence", lr=0.05),
        va("lr-0.5", "divergence", lr=0.5),
        dd("defaults", "healthy"),
        dd("lr-0.05", "no learning (loss stuck at 1)", lr=0.05),
    ]


class RecordingReporter:
    def __init__(self) -> None:
        self.history: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, metrics: Mapping[str, float], *_: Any, **__: Any) -> None:
        self.history.append((step, {k: float(v) for k, v in metrics.items()}))

    def should_stop(self) -> bool:
        return False

    def describe_run(self, info: Mapping[str, str]) -> None:
        pass


def _train(run: LabelledRun) -> tuple[str, list[tuple[int, dict[str, float]]], float]:
    import torch

    torch.set_num_threads(1)
    trainer = get_trainer(run.trainer)
    assert trainer is not None
    reporter = RecordingReporter()
    started = time.perf_counter()
    trainer.train(trainer.parse_params(run.params), torch.device("cpu"), reporter)
    return run.name, reporter.history, time.perf_counter() - started


def _encode(history: list[tuple[int, dict[str, float]]]) -> list[Any]:
    return [[step, {k: repr(v) for k, v in metrics.items()}] for step, metrics in history]


def _decode(raw: list[Any]) -> list[tuple[int, dict[str, float]]]:
    return [(int(step), {k: float(v) for k, v in m.items()}) for step, m in raw]


def collect(runs: list[LabelledRun], jobs: int, fresh: bool) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    if HISTORIES.is_file() and not fresh:
        kept = json.loads(HISTORIES.read_text())
    todo = [run for run in runs if run.name not in kept or kept[run.name]["params"] != run.params]
    if todo:
        print(f"training {len(todo)} labelled runs ({jobs} at a time) ...", flush=True)
        with ProcessPoolExecutor(jobs) as pool:
            for name, history, seconds in pool.map(_train, todo):
                run = next(r for r in todo if r.name == name)
                kept[name] = {"params": run.params, "history": _encode(history), "s": seconds}
                print(f"  {name}: {len(history)} evaluations in {seconds:.0f} s", flush=True)
                HISTORIES.parent.mkdir(parents=True, exist_ok=True)
                HISTORIES.write_text(json.dumps(kept, indent=1))
    return kept


def peers_of(
    run: LabelledRun, runs: list[LabelledRun], kept: dict[str, Any]
) -> Callable[[int], list[float]]:
    """What ``dead_objective`` compares ``run`` with: every other run of the same trainer on
    the same data, as if they were the study's completed trials (each one's best objective
    value up to the step)."""
    trainer = get_trainer(run.trainer)
    assert trainer is not None
    dataset = trainer.parse_params(run.params).model_dump().get("dataset")
    pick = max if run.direction == "maximize" else min
    others = [
        _decode(kept[other.name]["history"])
        for other in runs
        if other.name != run.name
        and other.trainer == run.trainer
        and trainer.parse_params(other.params).model_dump().get("dataset") == dataset
    ]

    def peers(step: int) -> list[float]:
        found = []
        for history in others:
            values = [m.get(run.objective, math.nan) for s, m in history if s <= step]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                found.append(pick(finite))
        return found

    return peers


def replay(
    run: LabelledRun,
    rules: list[StabilityRule],
    history: list[tuple[int, dict[str, float]]],
    peers: Callable[[int], list[float]],
) -> dict[str, int]:
    """The step at which each rule, alone, would first have stopped the run."""
    trainer = get_trainer(run.trainer)
    assert trainer is not None
    params = trainer.parse_params(run.params)
    watched = watched_metrics(trainer, params, run.objective)
    fired: dict[str, int] = {}
    for rule in rules:
        monitor = StabilityMonitor(
            [rule],
            run.objective,
            run.direction,
            watched,
            trainer.metrics,
            peers,
            horizon=trainer.evaluations(params),
        )
        for step, metrics in history:
            verdict = monitor.observe(step, metrics)
            if verdict is not None:
                fired[rule.type] = step
                break
    return fired


def _final(run: LabelledRun, history: list[tuple[int, dict[str, float]]]) -> str:
    values = [m.get(run.objective, math.nan) for _, m in history]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f"{run.objective} never finite"
    best = max(finite) if run.direction == "maximize" else min(finite)
    return f"{run.objective} last {values[-1]:.4g}, best {best:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="Comma-separated trainers (default: all).")
    parser.add_argument("--fresh", action="store_true", help="Train every run again.")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    runs = [r for r in _runs() if not only or r.trainer in only]
    kept = collect(runs, args.jobs, args.fresh)

    rule_names: list[str] = []
    table: list[tuple[LabelledRun, dict[str, int], int]] = []
    print(f"\n{'run':28} {'label':34} {'outcome':38} first rule (step/epochs)")
    for run in runs:
        trainer = get_trainer(run.trainer)
        assert trainer is not None
        rules = default_rules(trainer)
        rule_names += [r.type for r in rules if r.type not in rule_names]
        history = _decode(kept[run.name]["history"])
        fired = replay(run, rules, history, peers_of(run, runs, kept))
        table.append((run, fired, len(history)))
        first = min(fired.items(), key=lambda kv: kv[1], default=None)
        said = f"{first[0]} ({first[1]}/{len(history)})" if first else "-"
        print(f"{run.name:28} {run.label:34} {_final(run, history):38} {said}")

    n_unstable = sum(not run.healthy for run, _, _ in table)
    n_healthy = len(table) - n_unstable
    print(f"\n{n_unstable} unstable and {n_healthy} healthy runs")
    print(
        f"{'rule':24} {'stopped':>8} {'unstable':>9} {'healthy':>8} {'precision':>10} {'recall':>7}"
    )
    for name in [*rule_names, "any rule"]:

        def stops(fired: dict[str, int], name: str = name) -> bool:
            return bool(fired) if name == "any rule" else name in fired

        tp = sum(stops(f) and not r.healthy for r, f, _ in table)
        fp = sum(stops(f) and r.healthy for r, f, _ in table)
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
        print(
            f"{name:24} {tp + fp:>8} {tp:>9} {fp:>8} {precision:>10} "
            f"{tp / max(n_unstable, 1):>7.2f}"
        )

    spent = sum(n for r, _, n in table if not r.healthy)
    stopped_at = sum(min(f.values(), default=n) for r, f, n in table if not r.healthy)
    share = [min(f.values()) / n for r, f, n in table if not r.healthy and f]
    print(
        f"\nunstable runs: {spent} epochs trained to the end, {stopped_at} with the rules "
        f"({stopped_at / max(spent, 1):.0%}); median stop at "
        f"{float(np.median(share)) if share else math.nan:.0%} of a run"
    )


if __name__ == "__main__":
    main()
