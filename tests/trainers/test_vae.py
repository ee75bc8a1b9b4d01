from __future__ import annotations

import torch

from gentune.trainers.vae import VAETrainer, beta_at
from tests.trainers.contract import RecordingReporter, TrainerContract


class TestVAEContract(TrainerContract):
    trainer_name = "vae"
    small_params = {
        "epochs": 2,
        "batch_size": 256,
        "width": 8,
        "eval_samples": 100,
        "features": "random",
    }
    expected_evaluations = 2


def test_kl_warmup_ramps_beta() -> None:
    params = VAETrainer().parse_params({"beta": 2.0, "kl_warmup_epochs": 4})
    assert [beta_at(params, e) for e in (1, 2, 4, 9)] == [0.5, 1.0, 2.0, 2.0]  # type: ignore[arg-type]


def test_training_improves_samples_and_reconstructions() -> None:
    params = VAETrainer().parse_params({"epochs": 5})
    reporter = RecordingReporter()
    VAETrainer().train(params, torch.device("cpu"), reporter)
    first, last = reporter.reports[0][1], reporter.reports[-1][1]
    assert last["fid"] < first["fid"] / 2
    assert last["psnr"] > first["psnr"] + 2 and last["ssim"] > first["ssim"]
    assert reporter.samples[-1].shape == (64, 1, 16, 16)
