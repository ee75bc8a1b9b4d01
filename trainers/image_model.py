"""The shortest way to tune your own image model: a network that trains by minimizing one loss
with Adam and draws images from N(0, 1) latents. Subclass ``ImageModel`` (``loss``,
``generate``, ``latent_dim``) and ``ImageModelTrainer`` (``build``); gentune writes the loop,
the evaluation, the checkpoints, fine-tuning from a checkpoint and ``sample``. A model that
needs more (two networks, schedules) writes its own ``train`` on ``ImageTrainer``, as the
built-in trainers do."""

from __future__ import annotations

import abc
import functools
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from gentune.trainers.base import (
    Checkpoint,
    ImageTrainer,
    ImageTrainerParams,
    Reporter,
    TrainerParams,
    params_millions,
    restore_weights,
)
from gentune.trainers.loop import EpochMeter, batched
from gentune.trainers.metrics.evaluator import start_image_run


class ImageModelParams(ImageTrainerParams):
    """The image params plus what the loop needs: Adam's learning rate, batches, epochs."""

    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    batch_size: int = Field(128, ge=8, le=8192, description="Images per batch.")
    epochs: int = Field(10, ge=1, le=100_000, description="Passes over the training images.")


class ImageModel(nn.Module, abc.ABC):
    """A model ``ImageModelTrainer`` trains: images in [-1, 1], shaped (channels, h, w)."""

    latent_dim: int
    """Size of the N(0, 1) vectors ``generate`` takes."""

    @abc.abstractmethod
    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """The scalar to minimize on a batch of training images."""

    @abc.abstractmethod
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from a batch of latents of ``latent_dim``."""


class ImageModelTrainer(ImageTrainer):
    """A trainer for an ``ImageModel``: set ``name``, ``description``, ``Params`` (an
    ``ImageModelParams``), ``metrics`` (``IMAGE_TRAINER_METRICS`` plus ``loss_name``'s spec)
    and write ``build``. ``architecture`` lists the params ``build`` reads, so that a study may
    fine-tune a trial's checkpoint (``init_from``) when they match."""

    loss_name: ClassVar[str] = "loss"
    """The name the loss is reported under (mean over the epoch's steps)."""

    @abc.abstractmethod
    def build(self, params: ImageModelParams, image_shape: list[int]) -> ImageModel:
        """A new model for ``params`` and images of ``image_shape`` (channels, h, w)."""

    def train(self, params: TrainerParams, device: torch.device, reporter: Reporter) -> None:
        assert isinstance(params, ImageModelParams)
        run = start_image_run(params, device, reporter)
        shape = list(run.train.shape[1:])
        model = self.build(params, shape).to(device)
        restore_weights(params, device, model=model)
        optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
        draw = functools.partial(
            batched, model, model.generate, run.eval_noise(model.latent_dim), device
        )
        for epoch in range(1, params.epochs + 1):
            meter = EpochMeter(self.loss_name)
            for idx in run.batches(params.batch_size):
                loss = model.loss(run.train[idx.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                meter.step({self.loss_name: loss.item()}, images=len(idx))
            if run.report(
                reporter,
                epoch,
                meter.metrics(),
                draw=draw,
                size=params_millions(model),
                checkpoint=functools.partial(
                    run.saved, epoch, model=model.state_dict(), shape=shape
                ),
                watched=(self.loss_name,),
            ):
                return

    def sample(
        self, checkpoint: Checkpoint, n: int, device: torch.device, seed: int = 0
    ) -> np.ndarray:
        params = self.parse_params(checkpoint["config"])
        assert isinstance(params, ImageModelParams)
        model = self.build(params, list(checkpoint["shape"])).to(device)
        model.load_state_dict(checkpoint["model"])
        z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
        return batched(model, model.generate, z, device).numpy()
