"""TrainerContract: the suite every trainer, built-in or plugin, must pass.

Subclass it with ``trainer_name`` and ``small_params`` (params that train in seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from gentune.trainers.base import Checkpoint, Trainer, TrainerParams
from gentune.trainers.registry import get_trainer


class RecordingReporter:
    def __init__(self, stop_after: int | None = None) -> None:
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[Checkpoint] = []
        self.samples: list[np.ndarray] = []
        self.run_info: dict[str, str] = {}
        self.stop_after = stop_after

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.reports.append((step, dict(metrics)))
        if checkpoint is not None:
            self.checkpoints.append(checkpoint())
        if samples is not None:
            self.samples.append(samples())

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.reports) >= self.stop_after

    def describe_run(self, info: Mapping[str, str]) -> None:
        assert not self.reports, "describe_run belongs before the first report"
        self.run_info.update(info)


class TrainerContract:
    trainer_name: ClassVar[str]
    small_params: ClassVar[dict[str, Any]]
    expected_evaluations: ClassVar[int]

    @pytest.fixture
    def trainer(self) -> Trainer:
        trainer = get_trainer(self.trainer_name)
        assert trainer is not None, f"{self.trainer_name} is not in the registry"
        return trainer

    def params(self, trainer: Trainer, **overrides: Any) -> TrainerParams:
        return trainer.parse_params({**self.small_params, **overrides})

    def test_declares_params_and_metrics(self, trainer: Trainer) -> None:
        assert trainer.name == self.trainer_name
        assert trainer.description
        schema = trainer.Params.model_json_schema()
        assert "properties" in schema and "seed" in schema["properties"]
        assert trainer.metrics, "a trainer must declare the metrics it reports"
        trainer.Params()  # defaults alone are a valid config

    def test_fine_tuning_starts_from_the_checkpoint_it_names(
        self, trainer: Trainer, tmp_path: Path
    ) -> None:
        """init_from loads a checkpoint into the networks: the first evaluation of a run from
        a checkpoint, with learning rates at ~0, is the checkpoint's own evaluation."""
        if not trainer.architecture:
            pytest.skip("this trainer declares no architecture: it cannot fine-tune")
        assert set(trainer.architecture) <= set(trainer.Params.model_fields)
        first = RecordingReporter(stop_after=1)
        trainer.train(self.params(trainer), torch.device("cpu"), first)
        path = tmp_path / "start.pt"
        torch.save(first.checkpoints[-1], path)
        frozen = {k: 1e-12 for k in ("lr", "lr_g", "lr_d") if k in trainer.Params.model_fields}
        again = RecordingReporter(stop_after=1)
        init = {"trial": 1, "checkpoint": str(path)}
        trainer.train(self.params(trainer, **frozen, init_from=init), torch.device("cpu"), again)
        fresh = RecordingReporter(stop_after=1)
        trainer.train(self.params(trainer, **frozen), torch.device("cpu"), fresh)
        watched = self.fine_tune_metric
        started, untrained = again.reports[0][1][watched], fresh.reports[0][1][watched]
        reference = first.reports[0][1][watched]
        assert abs(started - reference) < abs(untrained - reference), (started, untrained)

    fine_tune_metric: ClassVar[str] = "fid"
    """A metric of the samples that tells a trained network from a new one."""

    def test_unknown_param_is_refused(self, trainer: Trainer) -> None:
        with pytest.raises(ValueError):
            trainer.parse_params({"no_such_param": 1})

    def test_reports_every_declared_metric_at_increasing_steps(self, trainer: Trainer) -> None:
        reporter = RecordingReporter()
        trainer.train(self.params(trainer), torch.device("cpu"), reporter)
        assert len(reporter.reports) == self.expected_evaluations
        steps = [step for step, _ in reporter.reports]
        assert steps == sorted(set(steps)), "steps must strictly increase"
        for _, metrics in reporter.reports:
            assert set(trainer.metrics) <= set(metrics), set(trainer.metrics) - set(metrics)
            assert all(isinstance(v, float) for v in metrics.values())
        for images in reporter.samples:  # pictures, when the trainer makes images
            assert images.ndim == 4 and images.shape[1] in (1, 3)
            assert images.min() >= -1 and images.max() <= 1

    def test_honours_should_stop(self, trainer: Trainer) -> None:
        reporter = RecordingReporter(stop_after=1)
        trainer.train(self.params(trainer), torch.device("cpu"), reporter)
        assert len(reporter.reports) == 1

    def test_checkpoint_is_a_plain_dict_that_samples(self, trainer: Trainer) -> None:
        reporter = RecordingReporter(stop_after=1)
        trainer.train(self.params(trainer), torch.device("cpu"), reporter)
        checkpoint = reporter.checkpoints[-1]
        assert isinstance(checkpoint, dict)
        assert {"model", "config", "step"} <= set(checkpoint)
        samples = trainer.sample(checkpoint, 64, torch.device("cpu"), seed=1)
        assert isinstance(samples, np.ndarray) and samples.shape[0] == 64
        again = trainer.sample(checkpoint, 64, torch.device("cpu"), seed=1)
        np.testing.assert_array_equal(samples, again)

    def test_same_seed_same_metrics_on_cpu(self, trainer: Trainer) -> None:
        runs = []
        for _ in range(2):
            reporter = RecordingReporter(stop_after=1)
            trainer.train(self.params(trainer, seed=7), torch.device("cpu"), reporter)
            runs.append(reporter.reports[0][1])
        for name, spec in trainer.metrics.items():
            if spec.timing:
                continue
            a, b = runs[0][name], runs[1][name]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-9)
