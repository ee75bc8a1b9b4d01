"""What every trainer's loop shares, so that each trainer's file holds only its own model and
step: an epoch's bookkeeping, shuffled batches, batched generation without gradients, scoring
samples, the report at the end of an epoch, and files written whole or not at all."""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gentune.trainers.base import Checkpoint, Reporter

if TYPE_CHECKING:
    from gentune.trainers.metrics.evaluator import ImageEvaluator


class EpochMeter:
    """Sums of per-step values over an epoch, the steps and images seen, the time taken."""

    def __init__(self, *names: str) -> None:
        self.sums = dict.fromkeys(names, 0.0)
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def step(self, values: Mapping[str, float], images: int = 0) -> None:
        """One optimization step: its values (losses, gradient norms) and the images it used."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1
        self.images += images

    def means(self) -> dict[str, float]:
        return {name: total / max(self.steps, 1) for name, total in self.sums.items()}

    def metrics(self) -> dict[str, float]:
        """The means, with seconds per step and images per second (the timing metrics)."""
        elapsed = time.perf_counter() - self.started
        return {
            **self.means(),
            "seconds_per_step": elapsed / max(self.steps, 1),
            "images_per_second": self.images / max(elapsed, 1e-9),
        }


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> list[torch.Tensor]:
    """One epoch's batches of indices into ``n`` items, in an order drawn from ``generator``."""
    order = torch.randperm(n, generator=generator)
    end = n - batch_size + 1 if drop_last else n
    return [order[i : i + batch_size] for i in range(0, end, batch_size)]


@torch.no_grad()
def batched(
    module: nn.Module,
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
) -> torch.Tensor:
    """``fn`` over ``inputs`` in batches on ``device``, with ``module`` in eval mode and no
    gradients; the outputs as one float tensor on the CPU."""
    was_training = module.training
    module.eval()
    parts = [
        fn(inputs[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(inputs), batch_size)
    ]
    module.train(was_training)
    return torch.cat(parts)


def report_epoch(
    reporter: Reporter,
    epoch: int,
    metrics: dict[str, float],
    checkpoint: Checkpoint | Callable[[], Checkpoint],
    samples: Callable[[], np.ndarray] | None,
    watched: Iterable[str],
) -> bool:
    """Report an epoch with its checkpoint (a dict, or a function that makes one only when it
    is saved); True when training should end: the study stopped the trial, or a watched metric
    (a loss) is no longer finite."""
    if not callable(checkpoint):
        checkpoint = functools.partial(dict, checkpoint)
    reporter.report(epoch, metrics, checkpoint, samples=samples)
    return reporter.should_stop() or not all(math.isfinite(metrics[name]) for name in watched)


def report_images(
    reporter: Reporter,
    epoch: int,
    metrics: dict[str, float],
    *,
    draw: Callable[[], torch.Tensor],
    evaluator: ImageEvaluator,
    size: float,
    checkpoint: Checkpoint | Callable[[], Checkpoint],
    watched: Iterable[str],
) -> bool:
    """An image trainer's end of epoch: draw the evaluation images (timed: ``sample_seconds``),
    score them, and report them with ``metrics``, the generator's ``size`` in millions of
    parameters and a grid of the first 64; True when training should end (``report_epoch``)."""
    started = time.perf_counter()
    fake = draw()
    metrics = {
        **metrics,
        "sample_seconds": time.perf_counter() - started,
        "params_millions": size,
        **evaluator.evaluate(fake),
    }
    return report_epoch(reporter, epoch, metrics, checkpoint, fake[:64].numpy, watched)


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file beside it: readers (concurrent
    trials among them) see the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
