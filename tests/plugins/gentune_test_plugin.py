"""A plugin trainer for the tests: gradient descent on a 1-D quadratic, with a switch to fail.

It reaches gentune only through the ``gentune.trainers`` entry point declared beside it, the
way a third-party package would.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field

from gentune.trainers.base import Checkpoint, MetricSpec, Reporter, Trainer, TrainerParams


class QuadraticParams(TrainerParams):
    lr: float = Field(0.1, gt=0, le=1)
    start: float = Field(5.0, ge=-100, le=100)
    epochs: int = Field(5, ge=1, le=10_000)
    fail_at: int = Field(0, ge=0, description="Raise at this step (0: never).")
    sleep_s: float = Field(0.0, ge=0, le=10, description="Pause per step, to make trials last.")


class QuadraticTrainer(Trainer):
    name = "quadratic"
    description = "Gradient descent on (x - 3)^2; a test plugin."
    Params = QuadraticParams
    metrics = {"loss": MetricSpec("(x - 3)^2", "minimize")}

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        p = QuadraticParams.model_validate(params.model_dump())
        x = p.start
        for step in range(1, p.epochs + 1):
            if step == p.fail_at:
                raise RuntimeError(f"quadratic trainer asked to fail at step {step}")
            x -= p.lr * 2 * (x - 3.0)
            time.sleep(p.sleep_s)
            state = {"model": {"x": x}, "config": p.model_dump(), "step": step}
            reporter.report(step, {"loss": (x - 3.0) ** 2}, lambda state=state: state)
            if reporter.should_stop():
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        return np.full((n, 1), checkpoint["model"]["x"])
