"""What scoring costs inside a trial, and how fast each feature extractor is.

For each image trainer on digits (16 px, default params, domain features): the wall time of
a training epoch, of one evaluation (generating the images, then FID/KID/PRDC/IS against
cached reference features), and the evaluation's share of the trial's time. Then images per
second of each extractor on this machine's CPU (and on CUDA when a GPU is present).

    .venv/bin/python benchmarks/metrics.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Mapping

import torch

from trainers.base import Checkpoint
from trainers.data import digits
from trainers.metrics.features import DomainClassifier, InceptionFeatures, RandomFeatures
from trainers.registry import get_trainer


class TimingReporter:
    """Splits each epoch's wall time into training and evaluation from the trainer's metrics."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.last = time.perf_counter()
        self.rows: list[tuple[float, float]] = []

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], object] | None = None,
    ) -> None:
        now = time.perf_counter()
        total = now - self.last
        training = metrics["seconds_per_step"] * self.steps_per_epoch
        self.rows.append((training, total - training))
        self.last = now

    def should_stop(self) -> bool:
        return False


def trial_costs(epochs: int) -> None:
    print(f"{'trainer':8} {'train s/epoch':>14} {'eval s':>8} {'eval share':>11}")
    for name in ("dcgan", "vae", "ddpm"):
        trainer = get_trainer(name)
        assert trainer is not None
        params = trainer.parse_params({"epochs": epochs + 1})
        batch_size = int(params.model_dump()["batch_size"])
        reporter = TimingReporter(digits(16).train.shape[0] // batch_size)
        trainer.train(params, torch.device("cpu"), reporter)
        rows = reporter.rows[1:]  # the first evaluation also builds the reference cache
        train_s = sum(r[0] for r in rows) / len(rows)
        eval_s = sum(r[1] for r in rows) / len(rows)
        print(f"{name:8} {train_s:14.2f} {eval_s:8.2f} {eval_s / (train_s + eval_s):10.1%}")


def extractor_speed(device: torch.device) -> None:
    data = digits(16)
    extractors = [
        ("domain", DomainClassifier.for_dataset(data), 2000),
        ("random", RandomFeatures(1), 2000),
    ]
    try:
        extractors.append(("inception", InceptionFeatures(), 64))
    except (FileNotFoundError, ValueError) as exc:
        print(f"inception: skipped ({exc})")
    for name, net, n in extractors:
        net = net.to(device)
        images = data.train[:n].repeat(max(1, -(-n // data.train.shape[0])), 1, 1, 1)[:n]
        net.features(images[:8])  # warm up
        start = time.perf_counter()
        net.features(images, batch_size=64)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = n / (time.perf_counter() - start)
        print(f"{name:10} on {device.type}: {rate:10.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("GENTUNE_CACHE_DIR", tempfile.mkdtemp(prefix="gentune-bench-"))
    print(f"torch threads: {torch.get_num_threads()}")
    trial_costs(args.epochs)
    extractor_speed(torch.device("cpu"))
    if torch.cuda.is_available():
        extractor_speed(torch.device("cuda"))


if __name__ == "__main__":
    main()
