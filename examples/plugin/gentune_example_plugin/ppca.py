"""ppca, an example gentune plugin: probabilistic PCA on images (Tipping and Bishop, 1999).
x = W z + mu + sigma * eps is Gaussian with covariance W W^T + sigma^2 I; Adam fits W, mu and
sigma on its exact likelihood. gentune's ImageModelTrainer writes the loop, the evaluation,
the checkpoints and sampling; this file holds only the model and its params."""

from __future__ import annotations

import math

import gentune
import torch
from pydantic import Field
from torch import nn


class PPCAParams(gentune.ImageModelParams):
    latent_dim: int = Field(16, ge=1, le=512, description="Number of principal directions k.")
    lr: float = Field(0.02, gt=0.0, le=1.0, description="Adam learning rate.")
    batch_size: int = Field(256, ge=8, le=8192, description="Images per batch.")


class PPCA(gentune.ImageModel):
    def __init__(self, shape: list[int], latent_dim: int) -> None:
        super().__init__()
        self.shape, self.latent_dim, dim = shape, latent_dim, math.prod(shape)
        self.w = nn.Parameter(torch.randn(dim, latent_dim) * 0.01)
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def loss(self, images: torch.Tensor) -> torch.Tensor:  # negative log-likelihood per pixel
        noise = (2 * self.log_sigma).exp().expand(self.mu.shape[0])
        normal = torch.distributions.LowRankMultivariateNormal(self.mu, self.w, noise)
        return -normal.log_prob(images.flatten(1)).mean() / self.mu.shape[0]

    def generate(self, z: torch.Tensor) -> torch.Tensor:  # the noise-free part, as images
        return (z @ self.w.T + self.mu).clamp(-1, 1).view(-1, *self.shape)


class PPCATrainer(gentune.ImageModelTrainer):
    name = "ppca"
    description = "Probabilistic PCA on images (an example plugin from examples/plugin)."
    Params = PPCAParams
    loss_name = "nll"
    metrics = {
        **gentune.IMAGE_TRAINER_METRICS,
        "nll": gentune.MetricSpec("Negative log-likelihood per pixel (nats).", "minimize"),
    }
    architecture = ("latent_dim", "dataset", "image_size")

    def build(self, params: gentune.ImageModelParams, image_shape: list[int]) -> PPCA:
        assert isinstance(params, PPCAParams)
        return PPCA(image_shape, params.latent_dim)
