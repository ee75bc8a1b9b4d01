"""ppca: probabilistic PCA on images, written as a third-party gentune trainer.

The model is x = W z + mu + sigma * eps with z ~ N(0, I_k) and eps ~ N(0, I_d), so x is
Gaussian with covariance W W^T + sigma^2 I (Tipping and Bishop, 1999). The trainer fits W, mu
and sigma by Adam on the exact negative log-likelihood of mini-batches. It borrows gentune's
image params (dataset, size, features, evaluation samples), datasets and metrics, which is
what a plugin for images would usually do; all it must provide is the ``Trainer`` interface.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from gentune import (
    IMAGE_METRIC_SPECS,
    Checkpoint,
    ImageTrainer,
    ImageTrainerParams,
    MetricSpec,
    Reporter,
    TrainerParams,
    start_image_run,
)
from pydantic import Field
from torch import nn


class PPCAParams(ImageTrainerParams):
    latent_dim: int = Field(16, ge=1, le=512, description="Number of principal directions k.")
    lr: float = Field(0.02, gt=0.0, le=1.0, description="Adam learning rate.")
    batch_size: int = Field(256, ge=8, le=8192, description="Images per batch.")
    epochs: int = Field(10, ge=1, le=100_000, description="Passes over the training images.")


class PPCA(nn.Module):
    def __init__(self, dim: int, latent_dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, latent_dim) * 0.01)
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def distribution(self) -> torch.distributions.LowRankMultivariateNormal:
        noise = (2 * self.log_sigma).exp().expand(self.mu.shape[0])
        return torch.distributions.LowRankMultivariateNormal(self.mu, self.w, noise)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The noise-free part W z + mu: what the samples show."""
        return z @ self.w.T + self.mu


class PPCATrainer(ImageTrainer):
    name = "ppca"
    description = "Probabilistic PCA on images (an example plugin from examples/plugin)."
    Params = PPCAParams
    metrics = {
        **IMAGE_METRIC_SPECS,
        "nll": MetricSpec("Negative log-likelihood per pixel (nats), training images.", "minimize"),
        "sigma": MetricSpec("Noise standard deviation of the model.", None),
    }

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        p = PPCAParams.model_validate(params.model_dump())
        data, evaluator = start_image_run(p, device, reporter)
        images = data.train.flatten(1).to(device)
        model = PPCA(images.shape[1], p.latent_dim).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        shuffle = torch.Generator().manual_seed(p.seed)
        eval_z = torch.randn(
            p.eval_samples, p.latent_dim, generator=torch.Generator().manual_seed(p.seed + 1)
        )

        def checkpoint() -> Checkpoint:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "config": p.model_dump(),
                "shape": list(data.train.shape[1:]),
                "dataset_fingerprint": data.fingerprint,
                "step": epoch,
            }

        for epoch in range(1, p.epochs + 1):
            started, total, steps = time.perf_counter(), 0.0, 0
            order = torch.randperm(images.shape[0], generator=shuffle)
            for i in range(0, len(order), p.batch_size):
                batch = images[order[i : i + p.batch_size].to(device)]
                loss = -model.distribution().log_prob(batch).mean() / images.shape[1]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, steps = total + loss.item(), steps + 1
            elapsed = time.perf_counter() - started
            fake = _decode(model, eval_z, tuple(data.train.shape[1:]), device)
            metrics = {
                "nll": total / steps,
                "sigma": float(model.log_sigma.detach().exp()),
                "seconds_per_step": elapsed / steps,
                "images_per_second": images.shape[0] / max(elapsed, 1e-9),
                **evaluator.evaluate(fake),
            }
            reporter.report(epoch, metrics, checkpoint, samples=fake[:64].numpy)
            if reporter.should_stop() or not math.isfinite(metrics["nll"]):
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        p = PPCAParams.model_validate(checkpoint["config"])
        shape = tuple(checkpoint["shape"])
        model = PPCA(math.prod(shape), p.latent_dim).to(device)
        model.load_state_dict(checkpoint["model"])
        z = torch.randn(n, p.latent_dim, generator=torch.Generator().manual_seed(seed))
        return _decode(model, z, shape, device).numpy()


@torch.no_grad()
def _decode(
    model: PPCA, z: torch.Tensor, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    return model.decode(z.to(device)).clamp(-1, 1).view(-1, *shape).float().cpu()
