"""gentune on a real multi-node Ray cluster started with ``ray start`` on this machine.

The nodes declare fake GPUs (Ray hands out GPU ids whether or not CUDA is there; the trials
then train on CPU). The tests show trials spread over the nodes within the resources they
declare, two workers sharing one queue, a study taken over when its worker stops
heartbeating, and trials surviving (or failing with the reason) when their node dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gentune.service.scheduling.runner import STUDY_NAME
from tests.support.databases import new_database_url
from tests.support.servers import Service, free_port, service_env, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RAY = str(Path(sys.executable).parent / "ray")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
"""Ray 2.60 turns token auth on in ``ray start --head`` when ~/.ray/auth_token exists (any
local ``ray.init()`` writes one); this cluster lives on loopback for one test module."""
LIST_NODES = (
    "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
    "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} "
    "for n in ray.nodes() if n['Alive']]))"
)


@dataclass
class RayNode:
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """The whole node at once (raylet, its workers, and GCS on the head), no draining."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    home: Path
    nodes: list[RayNode]

    def add_node(self, name: str, cpus: int, gpus: int) -> RayNode:
        node = _ray_start(
            ["--address", self.address, "--num-cpus", str(cpus), "--num-gpus", str(gpus)],
            self.env,
            self.home / f"{name}.log",
        )
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-c", LIST_NODES, self.address],
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        nodes: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
        return nodes

    def wait_for_nodes(self, count: int, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.alive_nodes()
            if len(nodes) == count or time.monotonic() > deadline:
                assert len(nodes) == count, f"{len(nodes)} Ray nodes alive, expected {count}"
                return nodes
            time.sleep(1)


def _ray_start(args: list[str], env: dict[str, str], log_path: Path) -> RayNode:
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            RAY,
            "start",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--object-store-memory",
            str(200 * 1024 * 1024),
            *args,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its raylet and workers share the group: one kill ends the node
    )
    return RayNode(process, log_path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head and a second node, each with 2 CPUs and 1 (fake) GPU."""
    home = tmp_path_factory.mktemp("cluster")
    env = {
        **service_env("sqlite://", home),  # the plugin path, so Ray's workers find the trainer
        **RAY_ENV,
    }
    port = free_port()
    head = _ray_start(
        ["--head", "--port", str(port), "--num-cpus", "2", "--num-gpus", "1"]
        + ["--include-dashboard", "false"],
        env,
        home / "head.log",
    )
    cluster = Cluster(f"127.0.0.1:{port}", env, home, [head])
    try:
        cluster.wait_for_nodes(1)
        cluster.add_node("node-b", cpus=2, gpus=1)
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            node.kill()


@pytest.fixture
def gentune(cluster: Cluster, tmp_path: Path) -> Iterator[GentuneOnCluster]:
    """An API and its workers (started by the test) on a fresh database, using the cluster."""
    database_url, cleanup = new_database_url(tmp_path)
    env = {
        **service_env(database_url, tmp_path / "artifacts"),
        "GENTUNE_RAY_ADDRESS": cluster.address,
        **RAY_ENV,
    }
    port = free_port()
    api = start(["serve", "--port", str(port), "--no-worker"], env, tmp_path / "api.log")
    svc = Service(
        f"http://127.0.0.1:{port}", database_url, tmp_path / "artifacts", env, tmp_path / "api.log"
    )
    deployment = GentuneOnCluster(svc, tmp_path, env, [api])
    try:
        svc.wait_until_up()
        yield deployment
    finally:
        for process in reversed(deployment.processes):
            stop(process)
        cleanup()  # type: ignore[operator]


@dataclass
class GentuneOnCluster:
    svc: Service
    home: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]

    def start_worker(self, name: str, **settings: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "GENTUNE_WORKER_ID": name, **settings}
        worker = start(["worker"], env, self.home / f"{name}.log")
        self.processes.append(worker)
        self.svc.log_path = self.home / f"{name}.log"
        return worker

    def submit(self, spec: dict[str, Any]) -> int:
        created = self.svc.api("POST", "/studies", json=spec)
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    def trials(self, study_id: int) -> list[dict[str, Any]]:
        page = self.svc.api("GET", f"/studies/{study_id}/trials", params={"limit": 500})
        return list(page.json()["data"])


def quadratic(name: str, n_trials: int, max_concurrent: int, **extra: Any) -> dict[str, Any]:
    """A study of the test plugin's quadratic trainer: cheap steps of a fixed length."""
    spec: dict[str, Any] = {
        "name": name,
        "trainer": "quadratic",
        "params": {"epochs": 8, "sleep_s": 0.25},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "sampler": {"type": "random", "seed": 3},
        "pruner": {"type": "none"},
        "budget": {"n_trials": n_trials, "max_concurrent": max_concurrent},
    }
    for key, value in extra.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec


def test_trials_spread_over_both_nodes_within_their_resources(
    cluster: Cluster, gentune: GentuneOnCluster
) -> None:
    nodes = {n["id"]: n["resources"] for n in cluster.wait_for_nodes(2)}
    gentune.start_worker("w-spread")
    spec = quadratic(
        "spread",
        8,
        4,
        resources={"cpu": 1, "gpu": 0.5},
        checkpoints={"keep_best": 2, "keep_last": True},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.3}},  # no ties at 0 loss
    )
    study_id = gentune.submit(spec)
    study = gentune.svc.wait_for_study(study_id, ("completed", "failed"), timeout=240)
    assert study["state"] == "completed", gentune.svc.log_tail()
    trials = gentune.trials(study_id)
    assert len(trials) == 8 and all(t["state"] == "completed" for t in trials)

    used = {t["ray_node_id"] for t in trials}
    assert used == set(nodes), f"trials ran on {used}, the cluster has {set(nodes)}"
    for trial in trials:
        assert trial["gpu_ids"] == "0", "each node has one GPU, id 0, shared by halves"
        assert trial["started_at"] is not None and trial["node"]
        # The loss falls every step: the best two are the last two; the last is the best.
        detail = gentune.svc.api("GET", f"/trials/{trial['id']}").json()
        kept = {a["kind"]: a["step"] for a in detail["checkpoints"]}
        assert kept == {"best": 8, "best-2": 7, "last": 8}, kept
        folder = gentune.svc.artifact_dir / f"studies/{study_id}/trials/{trial['id']}"
        on_disk = sorted(p.name for p in folder.iterdir() if not p.name.startswith("samples"))
        assert on_disk == ["checkpoint-7.pt", "checkpoint-8.pt"], on_disk
    # Per node: 1 GPU / 0.5 and 2 CPUs / 1 allow two trials at once, never three.
    for node_id, resources in nodes.items():
        slots = min(resources["GPU"] / 0.5, resources["CPU"] / 1)
        on_node = [t for t in trials if t["ray_node_id"] == node_id]
        assert _most_at_once(on_node) <= slots, f"node {node_id[:8]} ran more than {slots}"
    assert _most_at_once(trials) >= 2, "trials ran side by side"


def test_two_workers_on_one_queue_run_each_study_once(
    cluster: Cluster, gentune: GentuneOnCluster
) -> None:
    gentune.start_worker("w-one", GENTUNE_WORKER_MAX_STUDIES="2")
    gentune.start_worker("w-two", GENTUNE_WORKER_MAX_STUDIES="2")
    spec = quadratic("queue", 2, 1, params={"epochs": 3})
    study_ids = [gentune.submit({**spec, "name": f"queue-{i}"}) for i in range(8)]
    studies = [
        gentune.svc.wait_for_study(i, ("completed", "failed"), timeout=300) for i in study_ids
    ]
    assert all(s["state"] == "completed" for s in studies), studies
    assert [s["claims"] for s in studies] == [1] * 8, "each study was claimed exactly once"
    assert {s["worker_id"] for s in studies} == {"w-one", "w-two"}, "both workers took studies"
    for study_id in study_ids:
        trials = gentune.trials(study_id)
        assert sorted(t["number"] for t in trials) == [0, 1], "each study ran its budget once"
        assert all(t["state"] == "completed" for t in trials)


def test_a_study_whose_worker_stops_heartbeating_is_taken_over(
    cluster: Cluster, gentune: GentuneOnCluster
) -> None:
    beats = {"GENTUNE_HEARTBEAT_S": "0.5", "GENTUNE_STALE_AFTER_S": "10"}
    frozen = gentune.start_worker("w-frozen", **beats)
    spec = quadratic("takeover", 6, 2, params={"epochs": 10})
    study_id = gentune.submit(spec)
    gentune.svc.wait_for(
        lambda: any((t["last_step"] or 0) >= 2 for t in gentune.trials(study_id)),
        120,
        "a trial of the first worker to report",
    )
    runner = _study_process(frozen.pid)
    os.killpg(frozen.pid, signal.SIGSTOP)  # the worker and its study run: alive but silent
    try:
        gentune.start_worker("w-rescuer", **beats)
        gentune.svc.wait_for(
            lambda: (
                gentune.svc.api("GET", f"/studies/{study_id}").json()["worker_id"] == "w-rescuer"
            ),
            60,
            "the second worker to take the silent study over",
        )
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)  # it wakes, finds the study is no longer its own
    study = gentune.svc.wait_for_study(study_id, ("completed", "failed"), timeout=240)
    assert study["state"] == "completed", gentune.svc.log_tail()
    assert study["claims"] == 2
    trials = gentune.trials(study_id)
    lost = [t for t in trials if t["reason"] == "worker lost"]
    assert lost and all(t["state"] == "failed" for t in lost)
    counted = [t for t in trials if t["reason"] != "worker lost"]
    assert len(counted) == 6 and all(t["state"] == "completed" for t in counted)
    for trial in counted:
        steps = {
            p["step"]
            for p in gentune.svc.api("GET", f"/trials/{trial['id']}").json()["metrics"]["loss"]
        }
        assert steps == set(range(1, 11)), f"trial {trial['id']} has steps {sorted(steps)}"
    _wait_exit(runner, 60)  # the frozen worker's run ended itself once awake


@pytest.mark.parametrize("max_failures", [1, 0])
def test_a_trial_whose_node_dies_is_retried_or_failed_with_the_reason(
    cluster: Cluster, gentune: GentuneOnCluster, max_failures: int
) -> None:
    """A third node takes half of the study's trials; it is killed mid-trial."""
    before = {n["id"] for n in cluster.wait_for_nodes(2)}
    doomed = cluster.add_node(f"doomed-{max_failures}", cpus=2, gpus=2)
    try:
        doomed_id = ({n["id"] for n in cluster.wait_for_nodes(3)} - before).pop()
        gentune.start_worker(f"w-node-death-{max_failures}")
        # One GPU per trial, four at once: the cluster's 4 GPUs, 2 of them on the doomed node.
        spec = quadratic(
            "node-death",
            6,
            4,
            params={"epochs": 12, "sleep_s": 0.5},
            resources={"cpu": 0.5, "gpu": 1},
            budget={"max_concurrent": 4, "max_failures": max_failures},
        )
        study_id = gentune.submit(spec)

        seen: list[dict[str, Any]] = []

        def reporting_on_doomed() -> bool:
            # The node's two trials need not start together (a fresh node starts its worker
            # processes one by one): one of them reporting is enough to kill it mid-trial.
            seen[:] = gentune.trials(study_id)
            return any(
                t["ray_node_id"] == doomed_id
                and t["state"] == "running"
                and (t["last_step"] or 0) >= 2
                for t in seen
            )

        try:
            gentune.svc.wait_for(reporting_on_doomed, 180, "a trial running on the node")
        except AssertionError as timed_out:
            where = [(t["number"], t["state"], t["ray_node_id"], t["last_step"]) for t in seen]
            raise AssertionError(f"doomed node {doomed_id}; trials: {where}") from timed_out
        victims = {
            t["id"]
            for t in gentune.trials(study_id)
            if t["ray_node_id"] == doomed_id and t["state"] == "running"
        }
        doomed.kill()
    finally:
        doomed.kill()
        cluster.nodes.remove(doomed)

    study = gentune.svc.wait_for_study(study_id, ("completed", "failed"), timeout=300)
    assert study["state"] == "completed", gentune.svc.log_tail()
    trials = {t["id"]: t for t in gentune.trials(study_id)}
    assert len(trials) == 6, "a retried trial is the same trial, not a new one"
    for trial_id in victims:
        trial = trials[trial_id]
        if max_failures:
            assert trial["state"] == "completed", trial
            assert trial["attempts"] == 2
            assert trial["ray_node_id"] != doomed_id, "the second attempt ran elsewhere"
            losses = gentune.svc.api("GET", f"/trials/{trial_id}").json()["metrics"]["loss"]
            assert [p["step"] for p in losses] == list(range(1, 13)), "one attempt's history"
        else:
            assert trial["state"] == "failed", trial
            assert trial["attempts"] == 1
            assert trial["reason"].startswith("Ray lost the trial's worker process or its node"), (
                trial["reason"]
            )
    others = [t for i, t in trials.items() if i not in victims]
    assert all(t["state"] == "completed" for t in others), "the study continued"


def _most_at_once(trials: list[dict[str, Any]]) -> int:
    """The most trials whose [started_at, finished_at] overlap at one moment."""
    events = []
    for trial in trials:
        events.append((_time(trial["started_at"]), 1))
        events.append((_time(trial["finished_at"]) - 0.2, -1))  # the finish is noted late
    most = running = 0
    for _, change in sorted(events):
        running += change
        most = max(most, running)
    return most


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _study_process(worker_pid: int) -> int:
    out = subprocess.run(
        ["pgrep", "-P", str(worker_pid), "-x", STUDY_NAME],  # not its spare runner
        capture_output=True,
        text=True,
    )
    pids = out.stdout.split()
    assert len(pids) == 1, f"expected one study process under the worker, found {pids}"
    return int(pids[0])


def _wait_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return  # exited and reaped
        if state == "Z":
            return  # exited, not yet reaped
        time.sleep(0.5)
    raise AssertionError(f"the taken-over study process {pid} is still running")
