"""ddpm: a small U-Net denoising diffusion model on small images.

Reads top to bottom: the params, the noise schedules, the U-Net, the loop (predict the noise
added at a random timestep), and sampling. Evaluation draws images with deterministic DDIM
steps (``sampling_steps`` of the ``timesteps``), which is what makes scoring inside every
trial affordable on CPU.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from gentune.trainers.augment import augment
from gentune.trainers.base import (
    Checkpoint,
    ImageTrainer,
    ImageTrainerParams,
    MetricSpec,
    Reporter,
    TrainerParams,
    mixed_precision,
    params_millions,
    restore_weights,
)
from gentune.trainers.gan_losses import ema_of, grad_norm
from gentune.trainers.loop import EpochMeter
from gentune.trainers.metrics.evaluator import (
    IMAGE_PRUNER_DEFAULTS,
    IMAGE_TRAINER_METRICS,
    OPTIMIZER_METRIC_SPECS,
    one_network_rules,
    start_image_run,
)


class DDPMParams(ImageTrainerParams):
    timesteps: int = Field(200, ge=10, le=4000, description="Diffusion steps T.")
    beta_schedule: Literal["linear", "cosine"] = Field("cosine", description="Noise schedule.")
    width: int = Field(32, ge=8, le=256, description="Channels at full resolution.")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    batch_size: int = Field(64, ge=8, le=4096, description="Images per batch.")
    ema: float = Field(0.99, ge=0.0, lt=1.0, description="EMA decay of the weights (0: off).")
    epochs: int = Field(30, ge=1, le=100_000, description="Passes over the training images.")
    sampling_steps: int = Field(20, ge=2, le=4000, description="DDIM steps when sampling.")
    eval_samples: int = Field(
        500, ge=50, le=50_000, description="Images scored per evaluation (each takes DDIM steps)."
    )


def alpha_bars(p: DDPMParams) -> torch.Tensor:
    """Cumulative signal share alpha_bar_t for t = 1..T.

    Linear betas as in Ho et al. (2020), scaled to T; or the cosine schedule of Nichol and
    Dhariwal (2021).
    """
    if p.beta_schedule == "linear":
        betas = torch.linspace(1e-4, 0.02 * 1000 / p.timesteps, p.timesteps, dtype=torch.float64)
        return torch.cumprod(1 - betas.clamp(max=0.999), dim=0).float()
    s = 0.008
    t = torch.linspace(0, p.timesteps, p.timesteps + 1, dtype=torch.float64) / p.timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(t)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """Two resolutions: full and half, with a skip connection across."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.t_dim = width * 4
        self.time_mlp = nn.Sequential(
            nn.Linear(width, self.t_dim), nn.SiLU(), nn.Linear(self.t_dim, self.t_dim)
        )
        self.width = width
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.down = ResBlock(width, width, self.t_dim)
        self.pool = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid1 = ResBlock(2 * width, 2 * width, self.t_dim)
        self.mid2 = ResBlock(2 * width, 2 * width, self.t_dim)
        self.upsample = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)
        self.up = ResBlock(2 * width, width, self.t_dim)
        self.head = nn.Sequential(
            nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(time_embedding(t, self.width))
        skip = self.down(self.stem(x), temb)
        h = self.mid2(self.mid1(self.pool(skip), temb), temb)
        h = self.up(torch.cat([self.upsample(h), skip], dim=1), temb)
        out: torch.Tensor = self.head(h)
        return out


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    a_bar: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    device: torch.device,
    batch_size: int = 500,
) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from pure noise over ``steps`` evenly spaced timesteps."""
    was_training = model.training
    model.eval()
    timesteps = a_bar.shape[0]
    schedule = torch.linspace(timesteps - 1, 0, steps).round().long().tolist()
    a_bar = a_bar.to(device)
    parts = []
    for i in range(0, noise.shape[0], batch_size):
        x = noise[i : i + batch_size].to(device)
        for j, t in enumerate(schedule):
            t_batch = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
            eps = model(x, t_batch).float()
            x0 = ((x - (1 - a_bar[t]).sqrt() * eps) / a_bar[t].sqrt()).clamp(-1, 1)
            a_prev = a_bar[schedule[j + 1]] if j + 1 < len(schedule) else torch.tensor(1.0)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        parts.append(x.float().cpu())
    model.train(was_training)
    return torch.cat(parts).clamp(-1, 1)


def denoising_loss(
    model: nn.Module,
    x0: torch.Tensor,
    a_bar: torch.Tensor,
    autocast: contextlib.AbstractContextManager[Any],
) -> torch.Tensor:
    """The simple DDPM loss: noise ``x0`` to a random step t, and the squared error of the
    model's prediction of that noise (Ho et al., 2020)."""
    t = torch.randint(0, len(a_bar), (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    ab = a_bar[t][:, None, None, None]
    with autocast:
        predicted = model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t)
    return F.mse_loss(predicted.float(), noise)


class DDPMTrainer(ImageTrainer):
    name = "ddpm"
    architecture = ("dataset", "channels", "image_size", "width")
    description = "Denoising diffusion (small U-Net) on small images, DDIM sampling."
    Params = DDPMParams
    stability_defaults = one_network_rules(loss_floor=0.5, max_grad_norm=100.0)
    pruner_defaults = IMAGE_PRUNER_DEFAULTS
    metrics = {
        **IMAGE_TRAINER_METRICS,
        "loss": MetricSpec("Noise-prediction MSE, mean over the epoch.", "minimize"),
        **OPTIMIZER_METRIC_SPECS,
    }

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        p = DDPMParams.model_validate(params.model_dump())
        run = start_image_run(p, device, reporter)
        model = UNet(run.data.channels, p.width).to(device)
        restore_weights(p, device, model=model)
        ema = ema_of(model, p.ema)
        optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        autocast = mixed_precision(device, p.amp)
        a_bar = alpha_bars(p).to(device)
        eval_noise = run.eval_noise(run.data.channels, p.image_size, p.image_size)
        for epoch in range(1, p.epochs + 1):
            meter = EpochMeter("loss", "grad_norm")
            for idx in run.batches(p.batch_size):
                x0 = augment(run.train[idx.to(device)], p.augmentation)
                loss = denoising_loss(model, x0, a_bar, autocast)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = grad_norm(model)
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                meter.step({"loss": loss.item(), "grad_norm": norm}, images=len(x0))
            metrics = {**meter.metrics(), "lr": optimizer.param_groups[0]["lr"]}
            net = ema.module if ema is not None else model
            state = {"model": net.state_dict(), "optimizer": optimizer.state_dict()}
            if run.report(
                reporter,
                epoch,
                metrics,
                draw=functools.partial(
                    ddim_sample, net, a_bar, eval_noise, p.sampling_steps, device
                ),
                size=params_millions(net),
                checkpoint=functools.partial(run.saved, epoch, **state),
                watched=("loss",),
            ):
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        p = DDPMParams.model_validate(checkpoint["config"])
        channels = int(checkpoint["channels"])
        model = UNet(channels, p.width).to(device)
        model.load_state_dict(checkpoint["model"])
        noise = torch.randn(
            n, channels, p.image_size, p.image_size, generator=torch.Generator().manual_seed(seed)
        )
        return ddim_sample(model, alpha_bars(p), noise, p.sampling_steps, device).numpy()
