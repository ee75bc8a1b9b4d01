"""Adversarial losses shared by the GAN trainers; D sees logits, G is trained to fool it."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

GanLoss = Literal["bce", "hinge", "wgan-gp", "lsgan"]


def discriminator_loss(loss: GanLoss, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """D's loss on real and (detached) fake logits; wgan-gp's penalty is added separately."""
    if loss == "bce":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if loss == "hinge":
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
    if loss == "lsgan":
        return 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake**2).mean()
    return d_fake.mean() - d_real.mean()


def generator_loss(loss: GanLoss, d_fake: torch.Tensor) -> torch.Tensor:
    if loss == "bce":
        return F.softplus(-d_fake).mean()  # non-saturating
    if loss == "lsgan":
        return 0.5 * ((d_fake - 1) ** 2).mean()
    return -d_fake.mean()


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 at random points between real and fake samples."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def grad_norm(module: nn.Module) -> float:
    """Total gradient norm of a module's parameters after backward."""
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0
