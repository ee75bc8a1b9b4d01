"""The function Ray Tune runs for every trial, on a Ray worker.

It finds the trainer in the registry by name (never importing what the study names),
validates the params, and hands the trainer a reporter that keeps the last and best
checkpoints in the artifact store and forwards each evaluation to Tune.

A trainer's own exception ends the trial as a result (``trainer_error``), not as a Tune
error: Tune retries errors (``budget.max_failures``), and only a lost Ray worker or node is
worth another attempt; a bug in a config fails the same way every time.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from gentune.service.artifacts import ArtifactStore, CheckpointRetention, GridRetention
from gentune.service.scheduling.trial_settings import TrialSettings
from gentune.trainers import DATA_DIR_ENV
from gentune.trainers.base import Checkpoint
from gentune.trainers.grids import grid_png
from gentune.trainers.registry import get_trainer


class TuneReporter:
    """Reporter for trainers running under Ray Tune."""

    def __init__(
        self, trial: TrialSettings, run_info: Mapping[str, str], where: Mapping[str, Any]
    ) -> None:
        self.study_id = trial.study_id
        self.trial_id = trial.trial_id
        self.objective = trial.objective
        self.maximize = trial.maximize
        self.store = ArtifactStore(trial.artifact_dir)
        self.checkpoints = CheckpointRetention(
            self.store,
            self.study_id,
            self.trial_id,
            keep_best=trial.keep_best,
            keep_last=trial.keep_last,
            maximize=self.maximize,
        )
        self.grids = GridRetention(self.store, self.study_id, self.trial_id)
        self.placement = dict(where)
        self.unsent_info = dict(run_info)

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], np.ndarray] | None = None,
    ) -> None:
        value = metrics.get(self.objective)
        saved: dict[str, tuple[str, int, int]] = {}  # artifact kind -> (path, size, step)
        if checkpoint is not None:
            saved.update(
                self.checkpoints.save(
                    step, value, lambda: {**checkpoint(), "metrics": dict(metrics)}
                )
            )
        dropped: list[str] = []
        if samples is not None:
            path, size, dropped = self.grids.save(step, lambda: grid_png(samples(), scale=4))
            saved[f"samples-{step}"] = (path, size, step)
        result = {
            "step": step,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "saved": saved,
            "dropped": dropped,
            **self.placement,
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


def placement() -> dict[str, Any]:
    """Where this trial runs since when: host, Ray node and the GPUs Ray assigned it."""
    return {
        "started_at": time.time(),
        "node": socket.gethostname(),
        "ray_node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": ",".join(str(gpu) for gpu in ray.get_gpu_ids()),
    }


def with_checkpoint_path(raw: dict[str, Any], artifact_dir: str) -> dict[str, Any]:
    """Fine-tuning: ``init_from``'s checkpoint, stored relative to the artifact store, as a
    file on this worker (resolved inside the store: a path that leaves it is refused)."""
    init = raw.get("init_from")
    if not isinstance(init, dict) or not init.get("checkpoint"):
        return raw
    path = ArtifactStore(artifact_dir).resolve(str(init["checkpoint"]))
    return {**raw, "init_from": {**init, "checkpoint": str(path)}}


def failure_text(text: str) -> str:
    """An error as a trial's reason: its last line first, then the traceback (bounded)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the trial failed without a message"
    return f"{lines[-1].strip()}\n\n{text[-4000:]}"


def device_info(device: torch.device) -> dict[str, str]:
    """Where a trial runs and with what: device, and the versions that decide its numbers."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": f"{device.type}: {name or platform.machine()}",
        "torch_threads": str(torch.get_num_threads()),
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
    trial = TrialSettings.of(config)
    # Trainers cache what they compute once per dataset (feature nets, reference statistics).
    os.environ.setdefault("GENTUNE_CACHE_DIR", str(Path(trial.artifact_dir) / "cache"))
    # Tune runs a trial in a folder of its own, so the data root travels as an absolute path.
    os.environ[DATA_DIR_ENV] = trial.data_dir
    trainer = get_trainer(trial.trainer)
    if trainer is None:  # this node's install lacks the plugin: another node may have it
        raise RuntimeError(f"trainer {trial.trainer!r} is not registered on this Ray worker")
    where = placement()
    try:
        params = trainer.parse_params(
            with_checkpoint_path({**trial.fixed, **config["params"]}, trial.artifact_dir)
        )
        use_cuda = torch.cuda.is_available() and len(ray.get_gpu_ids()) > 0
        device = torch.device("cuda" if use_cuda else "cpu")
        trainer.train(params, device, TuneReporter(trial, device_info(device), where))
    except Exception:  # Tune stopping a trial raises SystemExit, which passes through
        tune.report({"trainer_error": failure_text(traceback.format_exc()), **where})
