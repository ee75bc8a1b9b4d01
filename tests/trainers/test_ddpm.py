from __future__ import annotations

import pytest
import torch

from gentune.trainers.ddpm import DDPMTrainer, alpha_bars, ddim_sample
from tests.trainers.contract import RecordingReporter, TrainerContract


class TestDDPMContract(TrainerContract):
    trainer_name = "ddpm"
    small_params = {
        "epochs": 2,
        "batch_size": 256,
        "width": 8,
        "eval_samples": 64,
        "sampling_steps": 4,
        "timesteps": 50,
        "features": "random",
    }
    expected_evaluations = 2


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_go_from_signal_to_noise(schedule: str) -> None:
    p = DDPMTrainer().parse_params({"beta_schedule": schedule, "timesteps": 1000})
    a_bar = alpha_bars(p)  # type: ignore[arg-type]
    assert a_bar.shape == (1000,)
    assert a_bar[0] > 0.99 and a_bar[-1] < 0.01
    assert bool((a_bar[1:] <= a_bar[:-1]).all())


def test_ddim_with_a_perfect_noise_predictor_recovers_the_image() -> None:
    """If the model knows the noise, one DDIM pass maps it back to the image it came from."""
    p = DDPMTrainer().parse_params({"timesteps": 100})
    a_bar = alpha_bars(p)  # type: ignore[arg-type]
    target = torch.rand(3, 1, 8, 8) * 2 - 1
    noise = torch.randn(3, 1, 8, 8)
    start = a_bar[-1].sqrt() * target + (1 - a_bar[-1]).sqrt() * noise

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ab = a_bar[t][:, None, None, None]
            return (x - ab.sqrt() * target) / (1 - ab).sqrt()

    out = ddim_sample(Oracle(), a_bar, start, steps=10, device=torch.device("cpu"))
    assert torch.allclose(out, target, atol=1e-4)


@pytest.mark.slow
def test_training_brings_fid_down() -> None:
    params = DDPMTrainer().parse_params(
        {"epochs": 5, "width": 16, "timesteps": 100, "eval_samples": 300, "sampling_steps": 10}
    )
    reporter = RecordingReporter()
    DDPMTrainer().train(params, torch.device("cpu"), reporter)
    fids = [m["fid"] for _, m in reporter.reports]
    assert fids[-1] < fids[0] / 1.5, fids
