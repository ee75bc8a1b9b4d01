"""Per-trial overhead of a study run through the service, against a plain Optuna loop.

Starts a real gentune service (API + worker + local Ray) on a fresh SQLite database, submits a
study over REST and times it from submit to completion. Then runs the very same configs
(read back from the service) in a plain Optuna loop that calls the trainer directly, with
Optuna's SQLite storage. Prints both times, the overhead per trial and the ratio.

    .venv/bin/python benchmarks/overhead.py [--trials 12] [--epochs 3] [--concurrent 1]
                                             [--warm-runners 1]

The clock starts once the worker's spare study process says it is ready (``--warm-runners 0``:
once Ray is up), so the time to first trial is the one a study gets from a worker already up.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import httpx
import optuna
import torch

from gentune.service.scheduling.runner import SPARE_READY
from gentune.trainers.base import Checkpoint
from gentune.trainers.registry import get_trainer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def study_spec(trials: int, epochs: int, concurrent: int) -> dict:
    return {
        "name": "overhead",
        "trainer": "gan2d",
        "params": {
            "dataset": "ring8",
            "epochs": epochs,
            "iters_per_epoch": 50,
            "eval_samples": 1000,
        },
        "search_space": {
            "lr_g": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "lr_d": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "loss": {"type": "categorical", "choices": ["bce", "hinge"]},
        },
        "objective": {"metric": "mode_score", "direction": "maximize"},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": trials, "max_concurrent": concurrent},
    }


def run_service(spec: dict, home: Path, warm_runners: int) -> tuple[float, dict, list[dict]]:
    port = free_port()
    env = {
        **os.environ,
        "GENTUNE_DATABASE_URL": f"sqlite:///{home / 'gentune.db'}",
        "GENTUNE_ARTIFACT_DIR": str(home / "artifacts"),
        "GENTUNE_WORKER_POLL_S": "0.2",
        "GENTUNE_WARM_RUNNERS": str(warm_runners),
    }
    log_path = home / "service.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gentune.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        _wait(lambda: _ok(f"{base}/health"), 120)
        if warm_runners:
            _wait(lambda: SPARE_READY in log_path.read_text(errors="replace"), 120)
        else:
            time.sleep(8)  # let the worker's local Ray come up before the clock starts
        start = time.perf_counter()
        study_id = httpx.post(f"{base}/studies", json=spec).json()["id"]
        _wait(
            lambda: (
                httpx.get(f"{base}/studies/{study_id}").json()["state"] in ("completed", "failed")
            ),
            1800,
        )
        elapsed = time.perf_counter() - start
        study = httpx.get(f"{base}/studies/{study_id}").json()
        trials = httpx.get(f"{base}/studies/{study_id}/trials", params={"limit": 1000}).json()
        return elapsed, study, trials["data"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=120)


class DirectReporter:
    """Keeps the last and best checkpoints in memory, as the service keeps them on disk."""

    def __init__(self, trial: optuna.Trial, objective: str) -> None:
        self.trial, self.objective = trial, objective
        self.best: float | None = None
        self.last: Checkpoint | None = None

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], object] | None = None,
    ) -> None:
        value = metrics[self.objective]
        if checkpoint is not None:
            self.last = checkpoint()
        self.best = value if self.best is None else max(self.best, value)
        self.trial.report(value, step)

    def should_stop(self) -> bool:
        return self.trial.should_prune()


def run_plain(spec: dict, configs: list[dict], home: Path) -> float:
    trainer = get_trainer(spec["trainer"])
    assert trainer is not None
    torch.set_num_threads(1)
    study = optuna.create_study(
        storage=f"sqlite:///{home / 'plain.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(0),
    )
    for params in configs:
        study.enqueue_trial(params)

    def objective(trial: optuna.Trial) -> float:
        params = {
            name: trial.suggest_float(name, 1e-4, 1e-2, log=True) for name in ("lr_g", "lr_d")
        }
        params["loss"] = trial.suggest_categorical("loss", ["bce", "hinge"])
        reporter = DirectReporter(trial, spec["objective"]["metric"])
        trainer.train(
            trainer.parse_params({**spec["params"], **params}), torch.device("cpu"), reporter
        )
        assert reporter.best is not None
        return reporter.best

    start = time.perf_counter()
    study.optimize(objective, n_trials=len(configs))
    return time.perf_counter() - start


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def breakdown(study: dict, trials: list[dict], plain_per_trial: float) -> list[tuple[str, float]]:
    """Where the service's time went, read from the study's and trials' timestamps."""
    ordered = sorted(trials, key=lambda t: _at(t["started_at"]))
    created, claimed = _at(study["created_at"]), _at(study["started_at"])
    first = ordered[0]
    runs = [_at(t["finished_at"]) - _at(t["started_at"]) for t in ordered]
    gaps = [_at(b["started_at"]) - _at(a["finished_at"]) for a, b in itertools.pairwise(ordered)]
    beyond, gap = sum(runs) / len(runs) - plain_per_trial, sum(gaps) / max(1, len(gaps))
    return [
        ("submit -> study claimed by the worker", claimed - created),
        ("claimed -> first trial created (runner start)", _at(first["created_at"]) - claimed),
        (
            "first trial created -> training (Tune start)",
            _at(first["started_at"]) - _at(first["created_at"]),
        ),
        ("time to first trial (submit -> training)", _at(first["started_at"]) - created),
        ("mean trial, start of training -> recorded end", sum(runs) / len(runs)),
        ("  of which beyond the plain loop's trial", beyond),
        ("mean gap, one trial's end -> next one's training", gap),
        ("per-trial overhead once trials run (beyond + gap)", beyond + gap),
        (
            "last trial's end -> study completed",
            _at(study["finished_at"]) - _at(ordered[-1]["finished_at"]),
        ),
    ]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the service did not finish in time")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument(
        "--warm-runners", type=int, default=1, help="GENTUNE_WARM_RUNNERS of the worker"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = study_spec(args.trials, args.epochs, args.concurrent)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        service_s, study, trials = run_service(spec, home, args.warm_runners)
        configs = [t["params"] for t in sorted(trials, key=lambda t: t["number"])]
        plain_s = run_plain(spec, configs, home)
    n = len(configs)
    print(
        f"trials: {n} (gan2d, {args.epochs} epochs x 50 iterations, {args.concurrent} at once; "
        f"{args.warm_runners} warm runner(s))"
    )
    print(f"service (REST submit to completed): {service_s:8.2f} s  ({service_s / n:.3f} s/trial)")
    print(f"plain Optuna loop, same configs:    {plain_s:8.2f} s  ({plain_s / n:.3f} s/trial)")
    print(f"overhead per trial:                 {(service_s - plain_s) / n:8.3f} s")
    print(f"ratio service / plain:              {service_s / plain_s:8.2f}x")
    print("breakdown (from the study's and trials' timestamps):")
    for label, seconds in breakdown(study, trials, plain_s / n):
        print(f"  {label:<50} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
