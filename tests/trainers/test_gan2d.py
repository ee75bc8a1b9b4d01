from __future__ import annotations

import numpy as np
import pytest
import torch

from gentune.trainers.data import grid25, ring8
from gentune.trainers.gan2d import Gan2DTrainer
from gentune.trainers.metrics import mode_metrics
from tests.trainers.contract import RecordingReporter, TrainerContract


class TestGan2DContract(TrainerContract):
    trainer_name = "gan2d"
    small_params = {"epochs": 3, "iters_per_epoch": 10, "batch_size": 64, "eval_samples": 200}
    fine_tune_metric = "frechet"
    expected_evaluations = 3


def test_mixtures_match_the_published_setups() -> None:
    ring = ring8()
    assert ring.n_modes == 8 and ring.std == 0.01
    np.testing.assert_allclose(ring.means.norm(dim=1).numpy(), np.ones(8), atol=1e-6)
    grid = grid25()
    assert grid.n_modes == 25 and grid.std == 0.05
    assert sorted(set(grid.means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_every_loss_trains_without_error() -> None:
    for loss in ("bce", "hinge", "wgan-gp"):
        reporter = RecordingReporter()
        params = Gan2DTrainer().parse_params(
            {
                "loss": loss,
                "epochs": 1,
                "iters_per_epoch": 5,
                "batch_size": 32,
                "eval_samples": 100,
                "spectral_norm": True,
                "batch_norm": True,
                "dropout": 0.1,
                "ema": 0.9,
                "n_critic": 2,
            }
        )
        Gan2DTrainer().train(params, torch.device("cpu"), reporter)
        assert len(reporter.reports) == 1


@pytest.mark.slow
def test_a_short_run_learns_the_ring() -> None:
    """3,000 generator steps with the default config cover ring8 with precise samples."""
    reporter = RecordingReporter()
    params = Gan2DTrainer().parse_params({"epochs": 30, "iters_per_epoch": 100})
    Gan2DTrainer().train(params, torch.device("cpu"), reporter)
    first, last = reporter.reports[0][1], reporter.reports[-1][1]
    assert last["frechet"] < first["frechet"]
    samples = torch.from_numpy(
        Gan2DTrainer().sample(reporter.checkpoints[-1], 2500, torch.device("cpu"))
    )
    scores = mode_metrics(samples, ring8().means, ring8().std)
    assert scores.modes == 8
    assert scores.hq_fraction >= 0.8
