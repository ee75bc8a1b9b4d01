"""Run a trial again from its manifest and compare what it reports with what was recorded.

``gentune reproduce`` fetches ``GET /trials/{id}/manifest``, trains the same config with the
same seed and torch thread count in its own process, and checks every recorded metric at
every recorded step (timings excepted: they differ from run to run by nature).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gentune.trainers.registry import get_trainer

COMPARED_FACTS = ("dataset_fingerprint", "torch", "gentune", "code", "device", "torch_threads")
"""Facts of the run shown side by side with this machine's; a difference may explain one
in the metrics."""


class ReproduceError(Exception):
    """The trial cannot be run again here (its trainer is missing, its config no longer
    parses)."""


@dataclass
class MetricCheck:
    name: str
    steps: int
    max_diff: float
    worst_step: int | None
    ok: bool
    note: str = ""


class _ReplayReporter:
    """Keeps every reported value; stops the run after the last step the trial recorded."""

    def __init__(self, last_step: int, on_step: Callable[[int], None] | None) -> None:
        self.last_step = last_step
        self.on_step = on_step
        self.values: dict[str, dict[int, float | None]] = {}
        self.info: dict[str, str] = {}
        self.step = 0

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Any = None,
        samples: Any = None,
    ) -> None:
        self.step = step
        for name, value in metrics.items():
            number = float(value)
            self.values.setdefault(name, {})[step] = number if math.isfinite(number) else None
        if self.on_step is not None:
            self.on_step(step)

    def should_stop(self) -> bool:
        return self.step >= self.last_step

    def describe_run(self, info: Mapping[str, str]) -> None:
        self.info.update(info)


def run_again(
    manifest: Mapping[str, Any],
    device: torch.device,
    on_step: Callable[[int], None] | None = None,
) -> tuple[dict[str, dict[int, float | None]], dict[str, str]]:
    """Train the manifest's config again up to its last recorded step; return every metric by
    step and what the trainer said about its run (dataset and its fingerprint)."""
    trainer = get_trainer(manifest["trainer"])
    if trainer is None:
        raise ReproduceError(f"trainer '{manifest['trainer']}' is not installed here")
    try:
        params = trainer.parse_params(manifest["config"])
    except ValueError as exc:
        raise ReproduceError(f"the recorded config no longer parses: {exc}") from exc
    threads = manifest["run_info"].get("torch_threads")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))
    last_step = max(
        (p["step"] for points in manifest["metrics"].values() for p in points), default=0
    )
    if last_step == 0:
        raise ReproduceError(f"trial {manifest['trial_id']} recorded no metrics to compare")
    reporter = _ReplayReporter(last_step, on_step)
    trainer.train(params, device, reporter)
    return reporter.values, reporter.info


def compare(
    recorded: Mapping[str, list[Mapping[str, Any]]],
    again: Mapping[str, Mapping[int, float | None]],
    tolerance: float,
    skip: set[str],
) -> list[MetricCheck]:
    """Each recorded metric (but those in ``skip``) against its value in the new run, step by
    step: within ``tolerance`` × max(1, |recorded|); NaN matches NaN only."""
    checks = []
    for name, points in sorted(recorded.items()):
        if name in skip:
            continue
        worst, worst_step, ok, missing = 0.0, None, True, []
        for point in points:
            step, value = point["step"], point["value"]
            if step not in again.get(name, {}):
                missing.append(step)
                ok = False
                continue
            diff = _difference(value, again[name][step])
            allowed = tolerance * max(1.0, abs(value) if value is not None else 0.0)
            if worst_step is None or diff > worst:
                worst, worst_step = diff, step
            ok = ok and diff <= allowed
        note = f"not reported again at step(s) {missing[:5]}" if missing else ""
        checks.append(MetricCheck(name, len(points) - len(missing), worst, worst_step, ok, note))
    return checks


def _difference(recorded: float | None, again: float | None) -> float:
    if recorded is None or again is None:
        return 0.0 if recorded is None and again is None else math.inf
    return abs(recorded - again)
