from __future__ import annotations

import math

import pytest
import torch

from gentune.trainers.data import ring8
from gentune.trainers.metrics import frechet_distance, mode_metrics


def test_samples_from_the_mixture_score_perfectly() -> None:
    ring = ring8()
    samples = ring.sample(8000, torch.Generator().manual_seed(0))
    scores = mode_metrics(samples, ring.means, ring.std)
    assert scores.modes == 8
    # Within 3 std of a 2-D isotropic Gaussian's centre lies 1 - exp(-9/2) = 98.89% of its mass.
    assert scores.hq_fraction == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert scores.mode_kl < 0.01


def test_collapse_onto_one_mode_is_seen() -> None:
    ring = ring8()
    samples = ring.means[0].repeat(1000, 1)
    scores = mode_metrics(samples, ring.means, ring.std)
    assert scores.modes == 1
    assert scores.hq_fraction == 1.0
    assert scores.mode_kl == pytest.approx(math.log(8))


def test_half_the_modes_evenly_gives_kl_log2() -> None:
    ring = ring8()
    samples = ring.means[:4].repeat(250, 1)
    assert mode_metrics(samples, ring.means, ring.std).mode_kl == pytest.approx(math.log(2))


def test_samples_off_every_mode_are_not_high_quality() -> None:
    ring = ring8()
    scores = mode_metrics(torch.zeros(100, 2), ring.means, ring.std)
    assert scores.modes == 0 and scores.hq_fraction == 0.0


def test_non_finite_samples_count_as_misses() -> None:
    ring = ring8()
    samples = torch.cat([ring.means, torch.full((8, 2), float("nan"))])
    scores = mode_metrics(samples, ring.means, ring.std)
    assert scores.modes == 8 and scores.hq_fraction == 0.5


def test_frechet_of_a_set_with_itself_is_zero_and_shift_adds_its_square() -> None:
    x = torch.randn(5000, 2, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(25.0, rel=1e-6)


def test_frechet_matches_the_closed_form_for_scaled_gaussians() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200_000, 2, generator=gen)
    y = 2.0 * torch.randn(200_000, 2, generator=gen)
    # Tr(I + 4I - 2*sqrt(4I)) = 2 * (1 + 4 - 4) = 2
    assert frechet_distance(x, y) == pytest.approx(2.0, rel=0.02)


def test_frechet_of_a_diverged_generator_is_infinite() -> None:
    x = torch.randn(100, 2)
    assert frechet_distance(x, torch.full((100, 2), float("nan"))) == math.inf
