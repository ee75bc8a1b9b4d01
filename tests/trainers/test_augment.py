"""Augmentations do what they say, keep images in [-1, 1] and let gradients through."""

from __future__ import annotations

import pytest
import torch

from gentune.trainers.augment import AugmentPolicy, augment
from gentune.trainers.data import digits


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return digits(16).train[:64].clone()


def test_no_policy_is_the_identity(images: torch.Tensor) -> None:
    assert torch.equal(augment(images, AugmentPolicy()), images)


def test_flip_mirrors_about_half_the_images(images: torch.Tensor) -> None:
    out = augment(images, AugmentPolicy(flip=True))
    same = [torch.equal(o, x) for o, x in zip(out, images, strict=True)]
    mirrored = [torch.equal(o, x.flip(2)) for o, x in zip(out, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(m and not s for s, m in zip(same, mirrored, strict=True)) < 54


def shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved by (dy, dx) pixels, the border repeated into the gap."""
    height, width = image.shape[-2:]
    rows = (torch.arange(height) - dy).clamp(0, height - 1)
    cols = (torch.arange(width) - dx).clamp(0, width - 1)
    return image[:, rows][:, :, cols]


def test_translation_is_a_whole_pixel_shift_within_the_limit(images: torch.Tensor) -> None:
    out = augment(images, AugmentPolicy(translation=0.125))  # up to 2 of 16 pixels
    moved = 0
    for o, x in zip(out, images, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(o, shift(x, dy, dx))
        ]
        assert matches, "an output is no shift of its input within 2 pixels"
        moved += (0, 0) not in matches
    assert moved > 32


def test_cutout_blanks_one_square_and_leaves_the_rest(images: torch.Tensor) -> None:
    out = augment(images, AugmentPolicy(cutout=0.5))
    changed = out != images
    assert bool((out[changed] == 0).all()), "cut pixels are set to 0 (mid-grey)"
    blanked = (out == 0) & (images != 0)
    assert int(blanked.flatten(1).sum(1).max()) <= 8 * 8
    assert int(blanked.flatten(1).any(1).sum()) > 48


def test_color_changes_images_within_range(images: torch.Tensor) -> None:
    rgb = images.repeat(1, 3, 1, 1)
    out = augment(rgb, AugmentPolicy(color=True))
    assert out.shape == rgb.shape and not torch.equal(out, rgb)
    assert out.min() >= -1 and out.max() <= 1


def test_gradients_flow_through_every_augmentation(images: torch.Tensor) -> None:
    x = images.repeat(1, 3, 1, 1).requires_grad_(True)
    policy = AugmentPolicy(flip=True, translation=0.125, cutout=0.25, color=True)
    augment(x, policy).square().sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)


def test_a_seed_repeats_the_draws(images: torch.Tensor) -> None:
    policy = AugmentPolicy(flip=True, translation=0.25, cutout=0.5, color=True)
    torch.manual_seed(3)
    first = augment(images, policy)
    torch.manual_seed(3)
    assert torch.equal(first, augment(images, policy))
