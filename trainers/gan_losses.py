"""What the GAN trainers share: adversarial losses (D sees logits), the gradient penalty,
their Adam pair, the EMA of the generator, and one training step of the pair."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from gentune.trainers.base import MetricSpec, Trainer, TrainerParams

GanLoss = Literal["bce", "hinge", "wgan-gp", "lsgan"]


class GanParams(TrainerParams):
    """The knobs every GAN trainer has: its optimizers, critic steps and D's regularizers."""

    gp_weight: float = Field(
        10.0, ge=0.0, le=1000.0, description="Gradient-penalty weight (wgan-gp)."
    )
    lr_g: float = Field(1e-3, gt=0.0, le=1.0, description="Generator learning rate (Adam).")
    lr_d: float = Field(2e-4, gt=0.0, le=1.0, description="Discriminator learning rate (Adam).")
    beta1: float = Field(0.5, ge=0.0, lt=1.0, description="Adam beta1 for both networks.")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam beta2 for both networks.")
    n_critic: int = Field(1, ge=1, le=10, description="Discriminator steps per generator step.")
    spectral_norm: bool = Field(False, description="Spectral normalization of D's layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in D's hidden layers.")
    weight_decay: float = Field(
        0.0, ge=0.0, le=1.0, description="Adam weight decay, both networks."
    )


GAN_METRIC_SPECS = {
    "g_loss": MetricSpec("Generator loss, mean over the epoch.", "minimize"),
    "d_loss": MetricSpec("Discriminator loss, mean over the epoch.", "minimize"),
    "stability/d_accuracy": MetricSpec(
        "Share of (real, fake) pairs D scores in the right order; near 1 when D wins outright.",
        None,
    ),
    "grad_norm_g": MetricSpec("Generator gradient norm, mean over the epoch.", None),
    "grad_norm_d": MetricSpec("Discriminator gradient norm, mean over the epoch.", None),
}
"""What ``gan_step`` measures, as every GAN trainer reports it."""


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


def d_accuracy(d_real: torch.Tensor, d_fake: torch.Tensor) -> float:
    """Share of (real, fake) pairs that D scores in the right order, real above fake.

    It reads the same under every loss (a WGAN critic's scores have no fixed threshold):
    0.5 when D cannot tell them apart, 1 when it separates every pair.
    """
    n = min(d_real.shape[0], d_fake.shape[0])
    return float((d_real[:n].detach() > d_fake[:n].detach()).float().mean())


class CriticAwareMetrics(Trainer):
    """For GAN trainers whose params carry ``loss``: a WGAN critic reports no
    stability/d_accuracy, since a healthy critic always ranks real above fake and the share
    then says nothing about collapse."""

    def reported_metrics(self, params: TrainerParams) -> Mapping[str, MetricSpec]:
        metrics = super().reported_metrics(params)
        if getattr(params, "loss", None) == "wgan-gp":
            return {k: v for k, v in metrics.items() if k != "stability/d_accuracy"}
        return metrics


def grad_norm(module: nn.Module) -> float:
    """Total gradient norm of a module's parameters after backward."""
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def adam_pair(
    g: nn.Module,
    d: nn.Module,
    lr_g: float,
    lr_d: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Separate Adam optimizers for G and D (two time-scale learning rates)."""
    return (
        torch.optim.Adam(g.parameters(), lr=lr_g, betas=betas, weight_decay=weight_decay),
        torch.optim.Adam(d.parameters(), lr=lr_d, betas=betas, weight_decay=weight_decay),
    )


def ema_of(g: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``g``'s weights and buffers, or None when decay is 0."""
    if decay <= 0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        g, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )


@dataclass
class GanPair:
    """A generator and its discriminator, their optimizers, and the generator's EMA."""

    g: nn.Module
    d: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None

    @property
    def sampler(self) -> nn.Module:
        """The generator samples come from: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.g

    def state(self) -> dict[str, Any]:
        """The checkpoint's networks and optimizers (``model`` is the sampling generator)."""
        return {
            "model": self.sampler.state_dict(),
            "discriminator": self.d.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
        }


def gan_step(
    pair: GanPair,
    loss: GanLoss,
    gp_weight: float,
    z_dim: int,
    reals: Iterable[torch.Tensor],
    augment: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> dict[str, float]:
    """One step of the pair: a discriminator step per batch of ``reals`` (its ``n_critic``)
    on detached fakes, then one generator step on a batch as large; the step's losses,
    gradient norms and D's ranking accuracy (from its last step)."""
    autocast = autocast or contextlib.nullcontext()
    for batch in reals:
        real = augment(batch)
        with autocast:
            fake = augment(pair.g(torch.randn(len(real), z_dim, device=real.device)).detach())
            d_real, d_fake = pair.d(real), pair.d(fake)
            loss_d = discriminator_loss(loss, d_real, d_fake)
        if loss == "wgan-gp":
            loss_d = loss_d + gp_weight * gradient_penalty(pair.d, real, fake.float())
        pair.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = grad_norm(pair.d)
        pair.opt_d.step()
    with autocast:
        z = torch.randn(len(real), z_dim, device=real.device)
        loss_g = generator_loss(loss, pair.d(augment(pair.g(z))))
    pair.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    grad_g = grad_norm(pair.g)
    pair.opt_g.step()
    if pair.ema is not None:
        pair.ema.update_parameters(pair.g)
    return {
        "g_loss": loss_g.item(),
        "d_loss": loss_d.item(),
        "grad_norm_g": grad_g,
        "grad_norm_d": grad_d,
        "stability/d_accuracy": d_accuracy(d_real, d_fake),
    }
