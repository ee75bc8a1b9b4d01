"""What scoring costs inside a trial, and how fast each feature extractor is.

For each image trainer on digits (16 px, default params, domain features): the wall time of
a training epoch, of one evaluation (generating the images, then FID/KID/PRDC/IS against
cached reference features), the evaluation's share of the trial's time, and trials per hour.
On a GPU each trainer runs its default trial twice, without and with bfloat16 autocast. Then
images per second of each extractor on the CPU (and on the GPU when there is one).

    .venv/bin/python benchmarks/metrics.py [--epochs N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Mapping

import torch

from gentune.trainers.base import Checkpoint
from gentune.trainers.data import digits
from gentune.trainers.metrics.features import DomainClassifier, InceptionFeatures, RandomFeatures
from gentune.trainers.registry import get_trainer


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

    def describe_run(self, info: Mapping[str, str]) -> None:
        pass


def trial_costs(device: torch.device, epochs: int | None, amps: list[bool]) -> None:
    """Per trainer (and AMP setting): training and evaluation seconds per epoch, the share
    spent evaluating, and the trial's wall time as trials per hour."""
    print(
        f"{'trainer':8} {'amp':>5} {'epochs':>6} {'train s/epoch':>14} {'eval s':>8} "
        f"{'eval share':>11} {'trial s':>8} {'trials/h':>9}"
    )
    for name in ("dcgan", "vae", "ddpm"):
        trainer = get_trainer(name)
        assert trainer is not None
        for amp in amps:
            overrides: dict[str, object] = {"amp": amp}
            if epochs is not None:
                overrides["epochs"] = epochs + 1  # the first also builds the reference cache
            params = trainer.parse_params(overrides)
            config = params.model_dump()
            reporter = TimingReporter(digits(16).train.shape[0] // int(config["batch_size"]))
            started = time.perf_counter()
            trainer.train(params, device, reporter)
            trial_s = time.perf_counter() - started
            rows = reporter.rows[1:]
            train_s = sum(r[0] for r in rows) / len(rows)
            eval_s = sum(r[1] for r in rows) / len(rows)
            print(
                f"{name:8} {str(amp):>5} {config['epochs']:6d} {train_s:14.3f} {eval_s:8.3f} "
                f"{eval_s / (train_s + eval_s):10.1%} {trial_s:8.1f} {3600 / trial_s:9.1f}"
            )


def extractor_speed(device: torch.device) -> None:
    data = digits(16)
    extractors = [
        ("domain", DomainClassifier.for_dataset(data), 2000),
        ("random", RandomFeatures(1), 2000),
    ]
    try:
        extractors.append(("inception", InceptionFeatures(), 64 if device.type == "cpu" else 2048))
    except (FileNotFoundError, ValueError) as exc:
        print(f"inception: skipped ({exc})")
    for name, net, n in extractors:
        net = net.to(device)
        images = data.train[:n].repeat(max(1, -(-n // data.train.shape[0])), 1, 1, 1)[:n]
        net.features(images[:8])  # warm up
        start = time.perf_counter()
        net.features(images, batch_size=64 if device.type == "cpu" else 256)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = n / (time.perf_counter() - start)
        print(f"{name:10} on {device.type}: {rate:10.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="Epochs per trial (default: 2 on CPU, each trainer's own default on a GPU).",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    args = parser.parse_args()
    os.environ.setdefault("GENTUNE_CACHE_DIR", tempfile.mkdtemp(prefix="gentune-bench-"))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if device.type == "cuda":
        trial_costs(device, args.epochs, amps=[False, True])
    else:
        trial_costs(device, 2 if args.epochs is None else args.epochs, amps=[False])
    extractor_speed(torch.device("cpu"))
    if device.type == "cuda":
        extractor_speed(device)


if __name__ == "__main__":
    main()
