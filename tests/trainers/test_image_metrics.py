"""Sanity that proves the image metrics mean what the papers mean, on CPU, offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

from gentune.trainers.data import ImageData, digits
from gentune.trainers.metrics.evaluator import ImageEvaluator
from gentune.trainers.metrics.features import DomainClassifier, RandomFeatures, numerics_tag
from gentune.trainers.metrics.image import ReferenceStats, fid, prdc, psnr, ssim


@pytest.fixture(scope="module")
def data() -> ImageData:
    return digits(16)


@pytest.fixture(scope="module")
def evaluator(data: ImageData, tmp_path_factory: pytest.TempPathFactory) -> ImageEvaluator:
    return ImageEvaluator(data, "domain", n_samples=1000, cache_dir=tmp_path_factory.mktemp("c"))


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1)
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), kernel)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.transpose(2, 3))


def test_domain_classifier_recognises_held_out_digits(
    data: ImageData, evaluator: ImageEvaluator
) -> None:
    classifier = evaluator.extractor
    assert isinstance(classifier, DomainClassifier)
    with torch.no_grad():
        predicted = classifier.logits(data.held_out).argmax(dim=1)
    assert float((predicted == data.held_out_labels).float().mean()) > 0.9


def test_held_out_digits_are_far_closer_than_noise(
    data: ImageData, evaluator: ImageEvaluator
) -> None:
    held = evaluator.evaluate(data.held_out)
    noise = evaluator.evaluate(torch.rand_like(data.held_out) * 2 - 1)
    assert held["fid"] * 20 < noise["fid"]
    assert held["kid"] < noise["kid"]
    assert held["precision"] > 0.7 and noise["precision"] < 0.1
    assert held["is"] > 7 and noise["is"] < held["is"]


@pytest.mark.parametrize("corrupt", ["blur", "noise"])
def test_fid_grows_monotonically_with_corruption(
    data: ImageData, evaluator: ImageEvaluator, corrupt: str
) -> None:
    gen = torch.Generator().manual_seed(0)
    levels = [0.5, 1.0, 1.5, 2.5] if corrupt == "blur" else [0.1, 0.25, 0.5, 1.0]
    values = []
    for level in levels:
        if corrupt == "blur":
            images = blur(data.held_out, level)
        else:
            images = data.held_out + level * torch.randn(data.held_out.shape, generator=gen)
        values.append(evaluator.evaluate(images.clamp(-1, 1))["fid"])
    assert values == sorted(values), values
    assert values[-1] > 2 * values[0]


def test_density_and_coverage_of_a_set_against_itself_are_about_one(data: ImageData) -> None:
    features = RandomFeatures(1).features(data.train[:1400])
    same = prdc(features, features)
    assert same.precision == same.recall == same.coverage == 1.0
    # Each point lies in its own ball and in its k nearest neighbours' balls: (k + 1) / k.
    assert same.density == pytest.approx(6 / 5)
    # Two independent halves of one distribution: density about 1, coverage 1 - 2^-k or so.
    halves = prdc(features[:700], features[700:])
    assert halves.density == pytest.approx(1.0, abs=0.15)
    assert halves.coverage > 0.9


def test_coverage_drops_when_classes_are_missing(
    data: ImageData, evaluator: ImageEvaluator
) -> None:
    assert data.held_out_labels is not None
    only_ones = data.held_out[data.held_out_labels == 1]
    full = evaluator.evaluate(data.held_out)
    partial = evaluator.evaluate(only_ones)
    assert partial["coverage"] < full["coverage"] / 3
    assert partial["fid"] > full["fid"]


def test_class_kl_is_near_zero_for_balanced_samples_and_grows_as_classes_go(
    data: ImageData, evaluator: ImageEvaluator
) -> None:
    """The bias check, on 500 held-out digits drawn from fewer and fewer classes (the same
    count each time, as a trial's eval_samples are): class_kl grows as classes go missing,
    and a mix tilted towards one class, none missing, scores in between."""
    assert data.held_out_labels is not None
    labels = data.held_out_labels
    gen = torch.Generator().manual_seed(0)

    def drawn(allowed: torch.Tensor) -> torch.Tensor:
        pool = torch.nonzero(allowed).squeeze(1)
        return data.held_out[pool[torch.randint(len(pool), (500,), generator=gen)]]

    balanced = evaluator.evaluate(drawn(labels >= 0))["class_kl"]
    assert balanced < 0.1, balanced
    kept = [evaluator.evaluate(drawn(labels < k))["class_kl"] for k in (8, 5, 2, 1)]
    assert [balanced, *kept] == sorted([balanced, *kept]), kept
    assert kept[-1] > 3, "one class of ten: nine missing, each costing about 0.1 x log(100)"
    tilted = torch.cat([drawn(labels >= 0)[:250], drawn(labels == 1)[:250]])
    assert balanced < evaluator.evaluate(tilted)["class_kl"] < kept[0]
    print(
        f"\nclass_kl at 500 samples: all 10 classes {balanced:.3f}, 8 {kept[0]:.2f}, "
        f"5 {kept[1]:.2f}, 2 {kept[2]:.2f}, 1 {kept[3]:.2f}"
    )
    random = ImageEvaluator(data, "random", n_samples=500, cache_dir=evaluator.cache_dir)
    assert math.isnan(random.evaluate(data.held_out)["class_kl"]), "no classes to count"


@pytest.mark.parametrize("extractor", ["domain", "random"])
def test_fid_agrees_with_torchmetrics_for_the_same_features(
    data: ImageData, evaluator: ImageEvaluator, extractor: str
) -> None:
    net = evaluator.extractor if extractor == "domain" else RandomFeatures(1)
    real, fake = data.train[:600], blur(data.held_out, 1.0)
    ours = fid(ReferenceStats.of(net.features(real)), net.features(fake))
    metric = FrechetInceptionDistance(feature=net, normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = float(metric.compute())
    assert ours == pytest.approx(theirs, rel=0.01)


def test_psnr_and_ssim_reward_faithful_reconstructions(data: ImageData) -> None:
    target = data.held_out[:64]
    close = (target + 0.05 * torch.randn_like(target)).clamp(-1, 1)
    far = (target + 0.5 * torch.randn_like(target)).clamp(-1, 1)
    assert psnr(close, target) > psnr(far, target) + 10
    assert ssim(close, target) > ssim(far, target)
    assert ssim(target, target) == pytest.approx(1.0)


def test_reference_features_are_cached(data: ImageData, tmp_path: Path) -> None:
    ImageEvaluator(data, "random", n_samples=200, cache_dir=tmp_path)
    cached = list(tmp_path.glob(f"ref-{data.fingerprint}-random-200-{numerics_tag()}.pt"))
    assert len(cached) == 1
    again = ImageEvaluator(data, "random", n_samples=200, cache_dir=tmp_path)
    assert torch.equal(again.reference.features, torch.load(cached[0], weights_only=True))


def test_a_cached_domain_classifier_serves_only_runs_with_its_thread_count(
    data: ImageData, tmp_path: Path
) -> None:
    """gentune reproduce runs a trial again with the trial's torch thread count; the classifier
    its FID comes from must be the trial's, bit for bit, never one another process (with
    another thread count) trained and cached: its weights, and every FID, would differ."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = DomainClassifier.for_dataset(data, tmp_path / "a")
        again = DomainClassifier.for_dataset(data, tmp_path / "b")  # trained afresh: the same
        torch.set_num_threads(2)
        DomainClassifier.for_dataset(data, tmp_path / "a")
    finally:
        torch.set_num_threads(threads)
    for name, tensor in one.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    files = sorted(f.name for f in (tmp_path / "a").glob("domain-*.pt"))
    assert files == [
        f"domain-{data.fingerprint}-torch{torch.__version__.split('+')[0]}-t{n}.pt" for n in (1, 2)
    ]
