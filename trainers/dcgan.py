"""dcgan: a convolutional GAN on small images (digits by default), scored by FID and friends.

Reads top to bottom: the params, the two networks, the training loop, sampling. An epoch is
one pass over the training images; after each, ``eval_samples`` generated images are scored
against the training set's cached reference features (see trainers.metrics). Augmentations
are DiffAugment-style: every image the discriminator sees, real or generated, goes through
them (see trainers.augment).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from pydantic import Field
from torch import nn

from gentune.trainers.augment import AugmentPolicy, augment
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
from gentune.trainers.gan_losses import (
    GAN_METRIC_SPECS,
    CriticAwareMetrics,
    GanLoss,
    GanPair,
    GanParams,
    adam_pair,
    ema_of,
    gan_step,
)
from gentune.trainers.loop import (
    EpochMeter,
    batched,
)
from gentune.trainers.metrics.evaluator import (
    IMAGE_PRUNER_DEFAULTS,
    IMAGE_TRAINER_METRICS,
    MODE_COLLAPSE_RULE,
    start_image_run,
)


class DCGANParams(ImageTrainerParams, GanParams):
    """Defaults measured on digits: G learning faster than D (1e-3 against 2e-4) with an EMA of
    G's weights brings FID down steadily from the first epochs (see the README)."""

    loss: GanLoss = Field("bce", description="bce (non-saturating), hinge, wgan-gp or lsgan.")
    batch_size: int = Field(32, ge=8, le=4096, description="Images per batch.")
    width: int = Field(64, ge=8, le=512, description="Channels of the widest-resolution layer.")
    z_dim: int = Field(64, ge=1, le=1024, description="Latent dimension.")
    batch_norm: bool = Field(True, description="Batch normalization in G.")
    ema: float = Field(0.98, ge=0.0, lt=1.0, description="EMA decay of G's weights (0: off).")
    epochs: int = Field(20, ge=1, le=100_000, description="Passes over the training images.")
    augment_cutout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Cutout of a square this fraction of the side (0: off)."
    )
    augment_color: bool = Field(False, description="Random brightness, saturation, contrast.")

    @property
    def augmentation(self) -> AugmentPolicy:
        """Applied to real and generated images alike, before the discriminator."""
        return AugmentPolicy(
            flip=self.augment_flip,
            translation=self.augment_translation,
            cutout=self.augment_cutout,
            color=self.augment_color,
        )


def _up_blocks(size: int) -> int:
    return int(math.log2(size // 4))


class Generator(nn.Module):
    def __init__(self, p: DCGANParams, channels: int) -> None:
        super().__init__()
        n_up = _up_blocks(p.image_size)
        top = p.width * 2 ** (n_up - 1)
        self.fc = nn.Linear(p.z_dim, top * 16)
        self.top = top
        layers: list[nn.Module] = []
        c = top
        for i in range(n_up):
            last = i == n_up - 1
            out = channels if last else c // 2
            if p.batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.ReLU(), nn.ConvTranspose2d(c, out, 4, 2, 1)]
            c = out
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.top, 4, 4))


class Discriminator(nn.Module):
    def __init__(self, p: DCGANParams, channels: int) -> None:
        super().__init__()

        def sn(module: nn.Module) -> nn.Module:
            return nn.utils.parametrizations.spectral_norm(module) if p.spectral_norm else module

        layers: list[nn.Module] = []
        c_in, c = channels, p.width
        for _ in range(_up_blocks(p.image_size)):
            layers += [sn(nn.Conv2d(c_in, c, 4, 2, 1)), nn.LeakyReLU(0.2)]
            if p.dropout > 0:
                layers.append(nn.Dropout(p.dropout))
            c_in, c = c, c * 2
        self.net = nn.Sequential(*layers, nn.Flatten(), sn(nn.Linear(c_in * 16, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DCGANTrainer(CriticAwareMetrics, ImageTrainer):
    name = "dcgan"
    architecture = (
        "dataset",
        "channels",
        "image_size",
        "width",
        "z_dim",
        "batch_norm",
        "spectral_norm",
    )
    description = "Convolutional GAN on small images, scored by FID, KID, IS and PRDC."
    Params = DCGANParams
    stability_defaults = (
        {"type": "divergence", "metrics": ["g_loss", "d_loss"], "factor": 10.0, "floor": 10.0},
        {"type": "discriminator_collapse", "accuracy": 0.99, "d_loss_floor": 0.05, "patience": 3},
        {"type": "gradient_explosion", "metrics": ["grad_norm_g", "grad_norm_d"], "max_norm": 2e3},
        MODE_COLLAPSE_RULE,
    )
    pruner_defaults = IMAGE_PRUNER_DEFAULTS
    metrics = {
        **IMAGE_TRAINER_METRICS,
        **GAN_METRIC_SPECS,
        "lr_g": MetricSpec("Generator learning rate.", None),
        "lr_d": MetricSpec("Discriminator learning rate.", None),
    }

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        p = DCGANParams.model_validate(params.model_dump())
        run = start_image_run(p, device, reporter)
        g = Generator(p, run.data.channels).to(device)
        d = Discriminator(p, run.data.channels).to(device)
        restore_weights(p, device, model=g, discriminator=d)
        opt_g, opt_d = adam_pair(g, d, p.lr_g, p.lr_d, (p.beta1, p.beta2), p.weight_decay)
        pair = GanPair(g, d, opt_g, opt_d, ema_of(g, p.ema))
        autocast = mixed_precision(device, p.amp)
        eval_z = run.eval_noise(p.z_dim)

        def augmented(x: torch.Tensor) -> torch.Tensor:
            return augment(x, p.augmentation)

        for epoch in range(1, p.epochs + 1):
            meter = EpochMeter(*GAN_METRIC_SPECS)
            batches = run.batches(p.batch_size)
            for i in range(0, len(batches), p.n_critic):
                reals = (run.train[idx.to(device)] for idx in batches[i : i + p.n_critic])
                step = gan_step(pair, p.loss, p.gp_weight, p.z_dim, reals, augmented, autocast)
                meter.step(step, images=p.batch_size * p.n_critic)
            metrics = meter.metrics()
            if p.loss == "wgan-gp":
                del metrics["stability/d_accuracy"]
            metrics.update(lr_g=opt_g.param_groups[0]["lr"], lr_d=opt_d.param_groups[0]["lr"])
            sampler = pair.sampler
            if run.report(
                reporter,
                epoch,
                metrics,
                draw=functools.partial(batched, sampler, sampler, eval_z, device),
                size=params_millions(sampler),
                checkpoint=functools.partial(run.saved, epoch, **pair.state()),
                watched=("d_loss", "g_loss"),
            ):
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        p = DCGANParams.model_validate(checkpoint["config"])
        g = Generator(p, int(checkpoint["channels"])).to(device)
        g.load_state_dict(checkpoint["model"])
        z = torch.randn(n, p.z_dim, generator=torch.Generator().manual_seed(seed))
        return batched(g, g, z, device).numpy()
