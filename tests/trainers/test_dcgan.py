from __future__ import annotations

import pytest
import torch

from tests.trainers.contract import RecordingReporter, TrainerContract
from trainers.dcgan import DCGANTrainer


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
def test_a_few_epochs_bring_fid_down() -> None:
    params = DCGANTrainer().parse_params({"epochs": 12, "lr_g": 1e-3, "lr_d": 1e-3})
    reporter = RecordingReporter()
    DCGANTrainer().train(params, torch.device("cpu"), reporter)
    fids = [metrics["fid"] for _, metrics in reporter.reports]
    assert min(fids[-3:]) < fids[0] / 2, fids  # CPU runs with a seed repeat exactly
