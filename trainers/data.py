"""Datasets for the trainers: 2-D Gaussian mixtures sampled afresh for every batch, and images
(scikit-learn's digits, a folder of the user's images) split into training and held-out parts.
Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class GaussianMixture2D:
    """Equal-weight isotropic Gaussian mixture in the plane, the usual mode-collapse probe."""

    name: str
    means: torch.Tensor  # (k, 2)
    std: float

    @property
    def n_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points: a uniformly chosen mode plus Gaussian noise of ``std``."""
        idx = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.means[idx] + noise


def ring8() -> GaussianMixture2D:
    """8 modes equally spaced on the unit circle, std 0.01 (as in PacGAN and VEEGAN)."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    means = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture2D("ring8", means, 0.01)


def grid25() -> GaussianMixture2D:
    """25 modes on the grid {-4, -2, 0, 2, 4}^2, std 0.05 (as in PacGAN and VEEGAN)."""
    coords = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    xs, ys = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    return GaussianMixture2D("grid25", means, 0.05)


MIXTURES = {"ring8": ring8, "grid25": grid25}


def gaussian_mixture(name: str) -> GaussianMixture2D:
    """The named mixture; ``name`` must be a key of ``MIXTURES`` (checked by the param model)."""
    return MIXTURES[name]()


# --- image datasets -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageData:
    """Images in [-1, 1], shape (N, C, H, W), split into a training and a held-out part."""

    name: str
    train: torch.Tensor
    held_out: torch.Tensor
    train_labels: torch.Tensor | None
    held_out_labels: torch.Tensor | None
    fingerprint: str
    """Content hash of images and labels: equal fingerprints mean the same data."""

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def size(self) -> int:
        return int(self.train.shape[-1])

    @property
    def n_classes(self) -> int | None:
        return None if self.train_labels is None else int(self.train_labels.max()) + 1


def _fingerprint(name: str, *tensors: torch.Tensor | None) -> str:
    digest = hashlib.sha256(name.encode())
    for tensor in tensors:
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _split(
    name: str,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    held_out_fraction: float,
    seed: int,
) -> ImageData:
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    n_held = int(round(images.shape[0] * held_out_fraction))
    held, train = order[:n_held], order[n_held:]
    return ImageData(
        name=name,
        train=images[train],
        held_out=images[held],
        train_labels=None if labels is None else labels[train],
        held_out_labels=None if labels is None else labels[held],
        fingerprint=_fingerprint(f"{name}:{held_out_fraction}:{seed}", images, labels),
    )


@functools.lru_cache(maxsize=8)
def digits(size: int = 16, held_out_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8x8, shipped with the package), upsampled.

    Bilinear upsampling to ``size`` pixels, scaled to [-1, 1]; a seeded split keeps
    ``held_out_fraction`` of the images apart for evaluation.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.from_numpy(raw.images).float().unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).contiguous()
    labels = torch.from_numpy(raw.target).long()
    return _split(f"digits{size}", images, labels, held_out_fraction, seed)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_folder(
    path: str | Path, size: int, channels: int = 3, held_out_fraction: float = 0.1, seed: int = 0
) -> ImageData:
    """Every image under ``path`` (recursively), resized to ``size`` x ``size``, in [-1, 1]."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"image folder {root} holds {len(files)} images; at least 2 are needed")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for file in files:
        with Image.open(file) as image:
            resized = image.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(resized, dtype=np.uint8).reshape(size, size, channels))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return _split(f"folder:{root.name}:{size}", images.contiguous(), None, held_out_fraction, seed)
