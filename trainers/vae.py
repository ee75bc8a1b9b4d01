"""vae: a convolutional variational autoencoder on small images.

Reads top to bottom: the params, the encoder and decoder, the loss (Gaussian reconstruction
plus beta-weighted KL with an optional linear warm-up), the loop, sampling. Besides the
sample-quality metrics of generated images it reports how faithfully held-out images are
reconstructed (PSNR, SSIM).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from pydantic import Field
from torch import nn

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
from gentune.trainers.gan_losses import grad_norm
from gentune.trainers.loop import (
    EpochMeter,
    batched,
)
from gentune.trainers.metrics.evaluator import (
    IMAGE_PRUNER_DEFAULTS,
    IMAGE_TRAINER_METRICS,
    OPTIMIZER_METRIC_SPECS,
    one_network_rules,
    start_image_run,
)
from gentune.trainers.metrics.image import psnr, ssim


class VAEParams(ImageTrainerParams):
    latent_dim: int = Field(16, ge=1, le=1024, description="Size of the latent code.")
    width: int = Field(32, ge=8, le=512, description="Channels of the first conv layer.")
    beta: float = Field(1.0, ge=0.0, le=100.0, description="Weight of the KL term.")
    kl_warmup_epochs: int = Field(0, ge=0, le=10_000, description="Epochs to ramp beta from 0.")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Adam weight decay.")
    batch_size: int = Field(64, ge=8, le=4096, description="Images per batch.")
    epochs: int = Field(20, ge=1, le=100_000, description="Passes over the training images.")


class VAE(nn.Module):
    def __init__(self, p: VAEParams, channels: int) -> None:
        super().__init__()
        n_down = int(math.log2(p.image_size // 4))
        enc: list[nn.Module] = []
        c_in, c = channels, p.width
        for _ in range(n_down):
            enc += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_stats = nn.Linear(c_in * 16, 2 * p.latent_dim)
        self.top = c_in
        self.from_latent = nn.Linear(p.latent_dim, c_in * 16)
        dec: list[nn.Module] = []
        c = c_in
        for i in range(n_down):
            out = channels if i == n_down - 1 else c // 2
            dec += [nn.ReLU(), nn.ConvTranspose2d(c, out, 4, 2, 1)]
            c = out
        self.decoder = nn.Sequential(*dec, nn.Tanh())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z).view(-1, self.top, 4, 4))

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's squared reconstruction error and KL from the prior, per image (in
        float32 under autocast), from one reparameterized sample of each posterior."""
        mu, logvar = self.encode(x)
        recon = self.decode(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
        mu, logvar = mu.float(), logvar.float()
        rec = ((recon.float() - x) ** 2).flatten(1).sum(dim=1).mean()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
        return rec, kl

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Each image decoded from its posterior mean."""
        return self.decode(self.encode(x)[0])


def beta_at(p: VAEParams, epoch: int) -> float:
    """Linear KL warm-up: beta grows from beta/warmup to beta over the first epochs."""
    if p.kl_warmup_epochs == 0:
        return p.beta
    return p.beta * min(1.0, epoch / p.kl_warmup_epochs)


class VAETrainer(ImageTrainer):
    name = "vae"
    architecture = ("dataset", "channels", "image_size", "width", "latent_dim")
    description = "Convolutional VAE on small images: sample FID and reconstruction PSNR/SSIM."
    Params = VAEParams
    stability_defaults = one_network_rules(loss_floor=10.0, max_grad_norm=1e4)
    pruner_defaults = IMAGE_PRUNER_DEFAULTS
    metrics = {
        **IMAGE_TRAINER_METRICS,
        "psnr": MetricSpec("PSNR (dB) of held-out reconstructions.", "maximize"),
        "ssim": MetricSpec("SSIM of held-out reconstructions.", "maximize"),
        "loss": MetricSpec("Negative ELBO per image (reconstruction + beta KL).", "minimize"),
        "reconstruction": MetricSpec("Squared error per image.", "minimize"),
        "kl": MetricSpec("KL divergence of the posterior from the prior, per image.", None),
        "beta": MetricSpec("KL weight in force this epoch.", None),
        **OPTIMIZER_METRIC_SPECS,
    }

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        p = VAEParams.model_validate(params.model_dump())
        run = start_image_run(p, device, reporter)
        model = VAE(p, run.data.channels).to(device)
        restore_weights(p, device, model=model)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        autocast = mixed_precision(device, p.amp)
        eval_z = run.eval_noise(p.latent_dim)
        held = run.data.held_out
        for epoch in range(1, p.epochs + 1):
            beta = beta_at(p, epoch)
            meter = EpochMeter("loss", "reconstruction", "kl", "grad_norm")
            for idx in run.batches(p.batch_size):
                x = augment(run.train[idx.to(device)], p.augmentation)
                with autocast:
                    rec, kl = model.losses(x)
                loss = rec + beta * kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = grad_norm(model)
                optimizer.step()
                values = {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}
                meter.step({**values, "grad_norm": norm}, images=len(x))
            metrics = {**meter.metrics(), "beta": beta, "lr": optimizer.param_groups[0]["lr"]}
            reconstructions = batched(model, model.reconstruct, held, device)
            metrics.update(psnr=psnr(reconstructions, held), ssim=ssim(reconstructions, held))
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            if run.report(
                reporter,
                epoch,
                metrics,
                draw=functools.partial(batched, model, model.decode, eval_z, device),
                size=params_millions(model.from_latent) + params_millions(model.decoder),
                checkpoint=functools.partial(run.saved, epoch, **state),
                watched=("loss",),
            ):
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        p = VAEParams.model_validate(checkpoint["config"])
        model = VAE(p, int(checkpoint["channels"])).to(device)
        model.load_state_dict(checkpoint["model"])
        z = torch.randn(n, p.latent_dim, generator=torch.Generator().manual_seed(seed))
        return batched(model, model.decode, z, device).numpy()
