"""ppca, an example gentune plugin: probabilistic PCA on images (Tipping and Bishop, 1999).
x = W z + mu + sigma * eps is Gaussian with covariance W W^T + sigma^2 I; Adam fits W, mu and
sigma on its exact likelihood. It borrows gentune's image params, datasets and metrics."""

from __future__ import annotations

import functools
import math

import gentune
import numpy as np
import torch
from pydantic import Field
from torch import nn


class PPCAParams(gentune.ImageTrainerParams):
    latent_dim: int = Field(16, ge=1, le=512, description="Number of principal directions k.")
    lr: float = Field(0.02, gt=0.0, le=1.0, description="Adam learning rate.")
    batch_size: int = Field(256, ge=8, le=8192, description="Images per batch.")
    epochs: int = Field(10, ge=1, le=100_000, description="Passes over the training images.")


class PPCA(nn.Module):
    def __init__(self, shape: list[int], latent_dim: int) -> None:
        super().__init__()
        self.shape, dim = shape, math.prod(shape)
        self.w = nn.Parameter(torch.randn(dim, latent_dim) * 0.01)
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        noise = (2 * self.log_sigma).exp().expand(self.mu.shape[0])
        normal = torch.distributions.LowRankMultivariateNormal(self.mu, self.w, noise)
        return -normal.log_prob(x.flatten(1)).mean() / self.mu.shape[0]  # per pixel

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # the noise-free part, as images
        return (z @ self.w.T + self.mu).clamp(-1, 1).view(-1, *self.shape)


class PPCATrainer(gentune.ImageTrainer):
    name = "ppca"
    description = "Probabilistic PCA on images (an example plugin from examples/plugin)."
    Params = PPCAParams
    metrics = {
        **gentune.IMAGE_METRIC_SPECS,
        **gentune.SAMPLING_METRIC_SPECS,
        "nll": gentune.MetricSpec("Negative log-likelihood per pixel (nats).", "minimize"),
    }

    def train(
        self, params: gentune.TrainerParams, device: torch.device, reporter: gentune.Reporter
    ) -> None:
        p = PPCAParams.model_validate(params.model_dump())
        run = gentune.start_image_run(p, device, reporter)
        model = PPCA(list(run.train.shape[1:]), p.latent_dim).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        eval_z = run.eval_noise(p.latent_dim)
        for epoch in range(1, p.epochs + 1):
            meter = gentune.EpochMeter("nll")
            for idx in run.batches(p.batch_size):
                loss = model.nll(run.train[idx.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                meter.step({"nll": loss.item()}, images=len(idx))
            if run.report(
                reporter,
                epoch,
                meter.metrics(),
                draw=lambda: gentune.batched(model, model.decode, eval_z, device),
                size=gentune.params_millions(model),
                checkpoint=functools.partial(
                    run.saved, epoch, model=model.state_dict(), shape=model.shape
                ),
                watched=("nll",),
            ):
                return

    def sample(self, checkpoint: dict, n: int, device: torch.device, seed: int = 0) -> np.ndarray:
        model = PPCA(checkpoint["shape"], checkpoint["config"]["latent_dim"]).to(device)
        model.load_state_dict(checkpoint["model"])
        z = torch.randn(n, model.w.shape[1], generator=torch.Generator().manual_seed(seed))
        return gentune.batched(model, model.decode, z, device).numpy()
