"""The function Ray Tune runs for every trial, on a Ray worker.

It finds the trainer in the registry by name (never importing what the study names),
validates the params, and hands the trainer a reporter that keeps the last and best
checkpoints in the artifact store and forwards each evaluation to Tune.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import subprocess
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from service.artifacts import ArtifactStore, artifact_path
from trainers import DATA_DIR_ENV
from trainers.base import Checkpoint
from trainers.grids import grid_png
from trainers.registry import get_trainer


class TuneReporter:
    """Reporter for trainers running under Ray Tune."""

    def __init__(self, meta: Mapping[str, Any], run_info: Mapping[str, str]) -> None:
        self.study_id = int(meta["study_id"])
        self.trial_id = int(meta["trial_id"])
        self.objective = str(meta["objective"])
        self.maximize = meta["direction"] == "maximize"
        self.store = ArtifactStore(meta["artifact_dir"])
        self.best: float | None = None
        self.node = socket.gethostname()
        self.unsent_info = dict(run_info)

    def _improves(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return self.best is None or (value > self.best if self.maximize else value < self.best)

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], np.ndarray] | None = None,
    ) -> None:
        value = metrics.get(self.objective)
        saved: dict[str, tuple[str, int]] = {}  # artifact kind -> (path, size)
        if checkpoint is not None:
            state = checkpoint()
            for kind in ("last", "best") if self._improves(value) else ("last",):
                path = artifact_path(self.study_id, self.trial_id, kind)
                saved[kind] = (
                    path,
                    self.store.save_checkpoint(path, {**state, "metrics": dict(metrics)}),
                )
        if samples is not None:
            kind = f"samples-{step}"
            path = artifact_path(self.study_id, self.trial_id, kind)
            saved[kind] = (path, self.store.write_bytes(path, grid_png(samples(), scale=4)))
        if self._improves(value):
            self.best = value
        result = {
            "step": step,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "saved": saved,
            "node": self.node,
        }
        if self.unsent_info:
            result["run_info"], self.unsent_info = self.unsent_info, {}
        # Tune ends the trial inside this call when its scheduler decides to stop it.
        tune.report(result)

    def should_stop(self) -> bool:
        """Tune stops a pruned or cancelled trial itself, at its next report."""
        return False

    def describe_run(self, info: Mapping[str, str]) -> None:
        """Kept with the trial; sent to the driver with the next report."""
        self.unsent_info.update(info)


def device_info(device: torch.device) -> dict[str, str]:
    """Where a trial runs and with what: device, and the versions that decide its numbers."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": f"{device.type}: {name or platform.machine()}",
        "torch": torch.__version__,
        "gentune": _version("gentune"),
        "optuna": _version("optuna"),
        "ray": _version("ray"),
        "python": platform.python_version(),
        "code": code_version(),
    }


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit the trial's code came from (``-dirty`` with local changes), when the
    package runs from a checkout; otherwise the installed package's version."""
    root = Path(__file__).resolve().parents[2]
    fallback = f"gentune {_version('gentune')} (not a git checkout)"
    if not (root / ".git").exists():
        return fallback
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return fallback
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else fallback


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def run_trial(config: dict[str, Any]) -> None:
    meta = config["gentune"]
    # Trainers cache what they compute once per dataset (feature nets, reference statistics).
    os.environ.setdefault("GENTUNE_CACHE_DIR", str(Path(meta["artifact_dir"]) / "cache"))
    # Tune runs a trial in a folder of its own, so the data root travels as an absolute path.
    os.environ[DATA_DIR_ENV] = meta["data_dir"]
    trainer = get_trainer(meta["trainer"])
    if trainer is None:
        raise RuntimeError(f"trainer {meta['trainer']!r} is not registered on this Ray worker")
    params = trainer.parse_params({**meta["fixed"], **config["params"]})
    use_cuda = torch.cuda.is_available() and len(ray.get_gpu_ids()) > 0
    device = torch.device("cuda" if use_cuda else "cpu")
    trainer.train(params, device, TuneReporter(meta, device_info(device)))
