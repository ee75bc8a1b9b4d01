from __future__ import annotations

import pytest
import torch

from gentune.trainers.dcgan import DCGANTrainer
from tests.trainers.contract import RecordingReporter, TrainerContract


class TestDCGANContract(TrainerContract):
    trainer_name = "dcgan"
    small_params = {
        "epochs": 2,
        "batch_size": 256,
        "width": 16,
        "eval_samples": 100,
        "features": "random",
    }
    expected_evaluations = 2


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan-gp", "lsgan"])
def test_every_loss_and_knob_trains(loss: str) -> None:
    params = DCGANTrainer().parse_params(
        {
            "loss": loss,
            "epochs": 1,
            "batch_size": 256,
            "width": 8,
            "eval_samples": 100,
            "features": "random",
            "spectral_norm": True,
            "dropout": 0.1,
            "ema": 0.9,
            "n_critic": 2,
            "image_size": 32,
        }
    )
    reporter = RecordingReporter()
    DCGANTrainer().train(params, torch.device("cpu"), reporter)
    ((step, metrics),) = reporter.reports
    assert step == 1 and metrics["images_per_second"] > 0
    samples = DCGANTrainer().sample(reporter.checkpoints[0], 5, torch.device("cpu"))
    assert samples.shape == (5, 1, 32, 32)
    assert samples.min() >= -1 and samples.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_default_params_bring_fid_down_every_epoch(seed: int) -> None:
    """The defaults improve steadily from the start, not only by luck of one seed."""
    params = DCGANTrainer().parse_params({"epochs": 5, "seed": seed})
    reporter = RecordingReporter()
    DCGANTrainer().train(params, torch.device("cpu"), reporter)
    fids = [metrics["fid"] for _, metrics in reporter.reports]
    assert all(b < a for a, b in zip(fids, fids[1:], strict=False)), fids
    assert fids[-1] < fids[0] / 2, fids
