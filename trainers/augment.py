"""Image augmentation for the trainers, differentiable so that a GAN can augment its fakes.

Every transform draws its randomness per image from torch's global generator (seeded by the
trainer, so CPU runs repeat) on the images' device, and keeps the images in [-1, 1].

- For ``vae`` and ``ddpm`` the transforms change the training images themselves, so the model
  learns to produce them too: only flips and small translations are offered there, for data
  that is (nearly) invariant to them.
- For ``dcgan`` they are applied DiffAugment-style (Zhao et al. 2020): to every image the
  discriminator sees, real and generated alike, with gradients flowing through to the
  generator, so the generator is never taught to produce the augmentation. Cutout and colour
  jitter are safe there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentPolicy:
    flip: bool = False
    """Mirror left-right with probability 1/2."""
    translation: float = 0.0
    """Shift by up to this fraction of the side, in whole pixels; edges are repeated."""
    cutout: float = 0.0
    """Blank (to 0, mid-grey) a square of this fraction of the side at a random place."""
    color: bool = False
    """Random brightness, saturation (colour images) and contrast."""


def augment(images: torch.Tensor, policy: AugmentPolicy) -> torch.Tensor:
    """``images`` (N, C, H, W) transformed by ``policy``; gradients flow through."""
    if policy.color:
        images = _color(images)
    if policy.flip:
        images = _flip(images)
    if policy.translation > 0:
        images = _translate(images, policy.translation)
    if policy.cutout > 0:
        images = _cutout(images, policy.cutout)
    return images


def _uniform(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One draw per image, shaped to broadcast over (C, H, W)."""
    draw = torch.rand(images.shape[0], 1, 1, 1, device=images.device, dtype=images.dtype)
    return low + (high - low) * draw


def _color(images: torch.Tensor) -> torch.Tensor:
    images = images + _uniform(images, -0.5, 0.5)  # brightness
    if images.shape[1] > 1:
        grey = images.mean(dim=1, keepdim=True)
        images = (images - grey) * _uniform(images, 0.0, 2.0) + grey  # saturation
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * _uniform(images, 0.5, 1.5) + mean  # contrast
    return images.clamp(-1, 1)


def _flip(images: torch.Tensor) -> torch.Tensor:
    mirrored = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
    return torch.where(mirrored, images.flip(3), images)


def _translate(images: torch.Tensor, fraction: float) -> torch.Tensor:
    n, _, height, width = images.shape
    max_dy, max_dx = round(height * fraction), round(width * fraction)
    if max_dy == 0 and max_dx == 0:
        return images
    dy = torch.randint(-max_dy, max_dy + 1, (n,), device=images.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), device=images.device)
    # Gather each output pixel from its shifted source, clamped to the border.
    rows = (torch.arange(height, device=images.device)[None, :] - dy[:, None]).clamp(0, height - 1)
    cols = (torch.arange(width, device=images.device)[None, :] - dx[:, None]).clamp(0, width - 1)
    flat = rows[:, :, None] * width + cols[:, None, :]  # (N, H, W) source index per pixel
    index = flat.flatten(1)[:, None, :].expand(-1, images.shape[1], -1)
    return images.flatten(2).gather(2, index).view_as(images)


def _cutout(images: torch.Tensor, fraction: float) -> torch.Tensor:
    n, _, height, width = images.shape
    side_y, side_x = max(1, round(height * fraction)), max(1, round(width * fraction))
    # The square's top-left corner may hang off the image, so edges are cut as often as centres.
    top = torch.randint(-(side_y // 2), height - side_y // 2, (n, 1, 1), device=images.device)
    left = torch.randint(-(side_x // 2), width - side_x // 2, (n, 1, 1), device=images.device)
    ys = torch.arange(height, device=images.device)[None, :, None]
    xs = torch.arange(width, device=images.device)[None, None, :]
    inside = (ys >= top) & (ys < top + side_y) & (xs >= left) & (xs < left + side_x)
    return images * (~inside)[:, None].to(images.dtype)
