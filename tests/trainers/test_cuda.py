"""The CUDA paths: image trainers with and without bfloat16 autocast, evaluation on the GPU.

Skipped where no GPU is visible (CI has none); run them on a GPU machine with
``pytest tests/trainers/test_cuda.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gentune.trainers.base import mixed_precision
from gentune.trainers.data import digits
from gentune.trainers.metrics.evaluator import ImageEvaluator
from gentune.trainers.registry import get_trainer
from tests.trainers.contract import RecordingReporter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
SMALL = {
    "dcgan": {"width": 16, "batch_size": 128, "augment_cutout": 0.25, "augment_color": True},
    "vae": {"width": 16, "batch_size": 128, "augment_flip": True},
    "ddpm": {"width": 16, "batch_size": 128, "sampling_steps": 5, "augment_translation": 0.125},
}


def test_autocast_runs_matrix_products_in_bfloat16() -> None:
    layer = torch.nn.Linear(8, 8).to(CUDA)
    x = torch.randn(4, 8, device=CUDA)
    with mixed_precision(CUDA, True):
        assert layer(x).dtype == torch.bfloat16
    with mixed_precision(CUDA, False):
        assert layer(x).dtype == torch.float32


@pytest.mark.parametrize("amp", [True, False], ids=["amp", "fp32"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_image_trainer_trains_on_cuda(name: str, amp: bool) -> None:
    trainer = get_trainer(name)
    assert trainer is not None
    params = trainer.parse_params(
        {"epochs": 2, "eval_samples": 200, "amp": amp, "image_size": 32, **SMALL[name]}
    )
    reporter = RecordingReporter()
    trainer.train(params, CUDA, reporter)
    assert [step for step, _ in reporter.reports] == [1, 2]
    for _, metrics in reporter.reports:
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        assert not bad, bad
    assert reporter.reports[-1][1]["fid"] < reporter.reports[0][1]["fid"] * 1.5
    images = reporter.samples[-1]
    assert images.shape[1:] == (1, 32, 32) and images.min() >= -1 and images.max() <= 1
    # A checkpoint written on the GPU samples on the CPU, the way `gentune sample` loads it.
    on_cpu = trainer.sample(reporter.checkpoints[-1], 16, torch.device("cpu"), seed=3)
    on_gpu = trainer.sample(reporter.checkpoints[-1], 16, CUDA, seed=3)
    assert on_cpu.shape == (16, 1, 32, 32)
    np.testing.assert_allclose(on_cpu, on_gpu, atol=0.05)


@pytest.mark.parametrize("extractor", ["domain", "random"])
def test_gpu_evaluation_matches_cpu(
    extractor: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = digits(16)
    cache = tmp_path_factory.mktemp("cache")
    fake = data.held_out + 0.2 * torch.randn(
        data.held_out.shape, generator=torch.Generator().manual_seed(0)
    )
    on_cpu = ImageEvaluator(data, extractor, n_samples=300, cache_dir=cache).evaluate(fake)
    on_gpu = ImageEvaluator(data, extractor, 300, cache_dir=cache, device=CUDA).evaluate(fake)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert on_gpu[name] == pytest.approx(on_cpu[name], rel=0.02, abs=1e-3), name
