"""Trials per hour as the Ray cluster grows, through gentune's own study runner.

CPU (the default): the same study runs on a Ray cluster of one node, then of two nodes, each
started with ``ray start`` on this machine and given ``--cpus-per-node`` CPUs; every trial asks
for 1 CPU, and the study may run as many trials at once as the cluster has CPUs. Printed: wall
time, trials per hour, and the ratio of two nodes to one.

GPU (``--gpu``, on a machine with CUDA): one node with one GPU; the study runs with 1, 2 and
4 trials packed per GPU (``resources.gpu`` 1, 0.5, 0.25) and as many at once.

Every configuration runs the same trials: a random sampler with a fixed seed, no pruner and
no stability rules, so each trial trains its full length.

    .venv/bin/python benchmarks/scaling.py [--trials 8] [--epochs 8] [--cpus-per-node 1] [--gpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import ray

from gentune.service.config import Settings
from gentune.service.db.models import StudyState
from gentune.service.db.repository import Repository
from gentune.service.db.session import migrate, session_scope
from gentune.service.scheduling.runner import run_study
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.validation import resolved_definition, validate_spec

RAY = str(Path(sys.executable).parent / "ray")
LIST_NODES = "import sys, ray; ray.init(address=sys.argv[1]); print(len(ray.nodes()))"


def study(trials: int, concurrent: int, gpu: float, epochs: int) -> StudySpec:
    """gan2d on ring8: a few seconds of single-threaded training per trial on CPU."""
    return StudySpec.model_validate(
        {
            "name": "scaling",
            "trainer": "gan2d",
            "params": {
                "dataset": "ring8",
                "epochs": epochs,
                "iters_per_epoch": 150,
                "eval_samples": 1000,
            },
            "search_space": {
                "lr_g": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
                "lr_d": {"type": "float", "low": 1e-3, "high": 6e-3, "log": True},
            },
            "objective": {"metric": "mode_score", "direction": "maximize"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "stability": {"defaults": False},
            "budget": {"n_trials": trials, "max_concurrent": concurrent},
            "resources": {"cpu": 1, "gpu": gpu},
        }
    )


class Cluster:
    """Ray nodes started with ``ray start --block`` on this machine, ended with one kill each."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def add(self, cpus: int, gpus: int) -> None:
        if self.address:
            where = ["--address", self.address]
        else:
            self.address = f"127.0.0.1:{free_port()}"
            port = self.address.rsplit(":", 1)[1]
            where = ["--head", "--port", port, "--include-dashboard", "false"]
        log = (self.home / f"node-{len(self.nodes)}.log").open("ab")
        self.nodes.append(
            subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", *where]
                + ["--num-cpus", str(cpus), "--num-gpus", str(gpus)]
                + ["--object-store-memory", str(300 * 1024 * 1024)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=os.environ,
            )
        )
        deadline = time.monotonic() + 90
        while self._count() != len(self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {len(self.nodes)} did not join; see {log.name}")
            time.sleep(1)

    def _count(self) -> int:
        out = subprocess.run(
            [sys.executable, "-c", LIST_NODES, self.address], capture_output=True, text=True
        )
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if out.returncode == 0 and lines else -1

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(spec: StudySpec, address: str, home: Path, label: str) -> tuple[float, int]:
    """Run ``spec`` on the cluster at ``address``; return wall seconds and completed trials."""
    settings = Settings(
        database_url=f"sqlite:///{home / f'{label}.db'}",
        artifact_dir=str(home / "artifacts"),
        ray_address=address,
    )
    migrate(settings.database_url)
    trainer = validate_spec(spec, settings)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        study_id = repo.create_study(spec.name, spec.trainer, resolved_definition(spec, trainer)).id
        repo.claim_next_study("bench")
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        started = time.perf_counter()
        state = run_study(study_id, "bench", settings)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    with session_scope(settings.database_url) as session:
        completed = Repository(session).trial_counts(study_id)["completed"]
    if state != StudyState.completed or completed != spec.budget.n_trials:
        raise RuntimeError(f"{label}: study ended {state} with {completed} completed trials")
    return seconds, completed


def report(label: str, seconds: float, trials: int) -> float:
    per_hour = trials / seconds * 3600
    print(f"{label:<28} {trials:>3} trials in {seconds:6.1f} s   {per_hour:7.0f} trials/hour")
    return per_hour


def cpu_scaling(trials: int, epochs: int, cpus: int, home: Path) -> None:
    print(
        f"gan2d ring8, {trials} trials of {epochs} epochs and 1 CPU each; "
        f"Ray nodes of {cpus} CPU(s) on this host"
    )
    rates = []
    for nodes in (1, 2):
        cluster = Cluster(home)
        try:
            for _ in range(nodes):
                cluster.add(cpus=cpus, gpus=0)
            spec = study(trials, nodes * cpus, 0.0, epochs)
            seconds, done = run(spec, cluster.address, home, f"cpu-{nodes}")
            rates.append(report(f"{nodes} node(s), {nodes * cpus} at once", seconds, done))
        finally:
            cluster.stop()
    print(f"ratio, 2 nodes to 1: {rates[1] / rates[0]:.2f}x")


def gpu_packing(trials: int, epochs: int, home: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; none is visible")
    print(f"gan2d ring8 on {torch.cuda.get_device_name(0)}, {trials} trials")
    cluster = Cluster(home)
    rates = []
    try:
        cluster.add(cpus=max(4, os.cpu_count() or 4), gpus=1)
        for packed in (1, 2, 4):
            spec = study(trials, packed, 1 / packed, epochs)
            seconds, done = run(spec, cluster.address, home, f"gpu-{packed}")
            rates.append(report(f"{packed} trial(s) per GPU", seconds, done))
    finally:
        cluster.stop()
    print(f"ratios to 1 per GPU: 2 -> {rates[1] / rates[0]:.2f}x, 4 -> {rates[2] / rates[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8, help="of 150 steps each")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="GPU packing instead of CPU nodes")
    args = parser.parse_args()
    # A throwaway cluster on loopback: no usage report, and no token auth (Ray 2.60 turns it
    # on where ~/.ray/auth_token exists); the nodes and this driver share these settings.
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="gentune-scaling-") as tmp:
        if args.gpu:
            gpu_packing(args.trials, args.epochs, Path(tmp))
        else:
            cpu_scaling(args.trials, args.epochs, args.cpus_per_node, Path(tmp))


if __name__ == "__main__":
    main()
