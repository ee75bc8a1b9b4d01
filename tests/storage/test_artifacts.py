"""The artifact store: atomic checkpoint writes, and the retention policy bounding disk use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from gentune.service.artifacts import (
    ArtifactStore,
    CheckpointRetention,
    GridRetention,
    artifact_path,
    grid_steps_kept,
    sweep_checkpoints,
)
from gentune.service.db.repository import Repository
from gentune.service.db.session import get_engine, session_scope
from tests.support.databases import new_database_url
from tests.support.servers import run_gentune


def _retention(store: ArtifactStore, keep_best: int, keep_last: bool) -> CheckpointRetention:
    return CheckpointRetention(
        store, 1, 7, keep_best=keep_best, keep_last=keep_last, maximize=False
    )


def _files(store: ArtifactStore) -> list[str]:
    folder = store.resolve(artifact_path(1, 7, "x")).parent
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_keeps_the_best_k_and_the_last_and_deletes_the_rest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    keeper = _retention(store, keep_best=2, keep_last=True)
    values = {1: 5.0, 2: 3.0, 3: 4.0, 4: 1.0, 5: float("nan"), 6: 2.0, 7: 9.0}
    kinds: dict[str, tuple[str, int, int]] = {}
    for step, value in values.items():
        kinds = keeper.save(step, value, lambda step=step: {"step": step})
    assert {kind: Path(path).name for kind, (path, _, _) in kinds.items()} == {
        "best": "checkpoint-4.pt",
        "best-2": "checkpoint-6.pt",
        "last": "checkpoint-7.pt",
    }
    assert _files(store) == ["checkpoint-4.pt", "checkpoint-6.pt", "checkpoint-7.pt"]
    for kind, (path, size, step) in kinds.items():
        assert store.load_checkpoint(path)["step"] == step, kind
        assert size == store.resolve(path).stat().st_size


def test_a_policy_of_only_the_best_writes_only_improvements(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    keeper = _retention(store, keep_best=1, keep_last=False)
    built: list[int] = []

    def state(step: int) -> dict[str, int]:
        built.append(step)
        return {"step": step}

    for step, value in enumerate([3.0, 2.0, 2.5, 4.0, 1.0], start=1):
        keeper.save(step, value, lambda step=step: state(step))
    assert built == [1, 2, 5], "a checkpoint that would be deleted at once is never built"
    # Step 2's file outlives its save by one: the database pointed at it until step 5 landed.
    assert _files(store) == ["checkpoint-2.pt", "checkpoint-5.pt"]
    sweep_checkpoints(store, 1, 7, {5})  # the trial ended; its driver recorded step 5
    assert _files(store) == ["checkpoint-5.pt"]
    assert _retention(ArtifactStore(tmp_path / "none"), 0, False).save(1, 1.0, dict) == {}


def test_a_file_the_database_may_still_point_at_is_deleted_one_save_later(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(tmp_path)
    keeper = _retention(store, keep_best=1, keep_last=True)
    keeper.save(1, 1.0, lambda: {"step": 1})
    keeper.save(2, 2.0, lambda: {"step": 2})  # best 1, last 2
    keeper.save(3, 0.5, lambda: {"step": 3})  # best and last 3: steps 1 and 2 leave the set
    assert _files(store) == ["checkpoint-1.pt", "checkpoint-2.pt", "checkpoint-3.pt"]
    keeper.save(4, 0.9, lambda: {"step": 4})
    assert _files(store) == ["checkpoint-3.pt", "checkpoint-4.pt"]
    # The trial ended and its driver recorded best 3, last 4: nothing else may stay.
    assert sweep_checkpoints(store, 1, 7, {3, 4}) == []
    assert sweep_checkpoints(store, 1, 7, {4}) == [3]
    assert _files(store) == ["checkpoint-4.pt"]


def test_a_new_attempt_sweeps_what_an_earlier_one_left(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    folder = store.resolve(artifact_path(1, 7, "x")).parent
    folder.mkdir(parents=True)
    (folder / "checkpoint-40.pt").write_bytes(b"from the lost attempt")
    (folder / ".checkpoint-41.pt.k2j3.tmp").write_bytes(b"half a file")
    (folder / "samples-40.png").write_bytes(b"a sample grid stays")
    _retention(store, keep_best=1, keep_last=True).save(1, 2.0, lambda: {"step": 1})
    assert _files(store) == ["checkpoint-1.pt", "samples-40.png"]


def test_readers_never_see_a_half_written_checkpoint(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    path = "studies/1/trials/1/checkpoint-1.pt"
    store.save_checkpoint(path, {"size": 0, "weights": torch.zeros(1)})
    stop = threading.Event()

    def rewrite() -> None:
        size = 1
        while not stop.is_set():
            size = size * 4 % 3_000_001 + 1
            store.save_checkpoint(path, {"size": size, "weights": torch.ones(size)})

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            checkpoint = store.load_checkpoint(path)  # raises on a truncated file
            assert checkpoint["weights"].numel() == max(checkpoint["size"], 1)
            reads += 1
    finally:
        stop.set()
        writer.join()
    assert reads > 10


WRITE_FOREVER = """
import sys
from gentune.service.artifacts import ArtifactStore
store = ArtifactStore(sys.argv[1])
chunk = b"x" * (64 * 1024 * 1024)
while True:
    store.write_bytes("studies/1/trials/7/checkpoint-1.pt", chunk * 4)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    path = artifact_path(1, 7, "checkpoint-1")
    store.save_checkpoint(path, {"step": 1})
    folder = store.resolve(path).parent
    writer = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".tmp") and p.stat().st_size for p in folder.iterdir()):
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.01)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    final = store.resolve(path)
    if final.stat().st_size == 256 * 1024 * 1024:
        pytest.skip("the writer finished a whole file before the kill; nothing to check")
    assert store.load_checkpoint(path) == {"step": 1}, "the previous checkpoint is intact"
    assert leftovers, "the kill landed mid-write, leaving its temporary file"
    _retention(store, keep_best=1, keep_last=True).save(2, 1.0, lambda: {"step": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2.pt"]


def test_paths_that_leave_the_store_are_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    (tmp_path / "store" / "studies").mkdir(parents=True)
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "store" / "studies" / "out").symlink_to(tmp_path)  # a link pointing out
    for path in ("../secret", "/etc/passwd", "studies/../../secret", "studies/out/secret"):
        with pytest.raises(ValueError, match="leaves the artifact store"):
            store.resolve(path)
        with pytest.raises(ValueError, match="leaves the artifact store"):
            store.write_bytes(path, b"x")
    assert (tmp_path / "secret").read_text() == "outside"
    assert store.resolve("studies/1/trials/2/checkpoint-3.pt").is_relative_to(store.root)


def test_a_written_checkpoint_is_durable_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the rename into place the folder is synced too: otherwise a power cut can undo
    the rename while the database, committed next, names the new file. (Which descriptors
    are synced is observed through os.fsync; the write itself is real.)"""
    synced: list[str] = []
    real_fsync = os.fsync

    def observed(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", observed)
    store = ArtifactStore(tmp_path)
    relative = artifact_path(1, 7, "best")
    store.save_checkpoint(relative, {"step": 1, "w": torch.zeros(2)})
    target = store.resolve(relative)
    assert target.exists()
    assert len(synced) == 2, synced
    assert Path(synced[0]).parent == target.parent and synced[0] != str(target)  # the temp file
    assert synced[1] == str(target.parent), "the folder is synced after the rename"


@pytest.mark.database
def test_an_artifact_folder_serves_one_database_only(tmp_path: Path) -> None:
    """Studies of two databases both start at id 1 and name their files by id: a second
    database pointed at the same artifact folder (a new user following the README from the
    default SQLite to Postgres) would overwrite the first's checkpoints. The folder is bound
    to the first database that uses it; the API and workers of another refuse to start,
    saying what to set."""
    first, cleanup = new_database_url(tmp_path)
    second = f"sqlite:///{tmp_path / 'second.db'}"
    artifacts = tmp_path / "artifacts"

    def gentune(database_url: str, *args: str, wait_for: str | None = None) -> tuple[int, str]:
        env = {
            **os.environ,
            "GENTUNE_DATABASE_URL": database_url,
            "GENTUNE_ARTIFACT_DIR": str(artifacts),
            "GENTUNE_WORKER_POLL_S": "0.2",
        }
        return run_gentune(list(args), env, tmp_path, until=wait_for)

    try:
        code, out = gentune(
            first, "serve", "--no-worker", "--port", "0", wait_for="startup complete"
        )
        assert "startup complete" in out, out
        marker = json.loads((artifacts / "gentune-store.json").read_text())
        with session_scope(first) as session:
            assert marker["database_id"] == Repository(session).database_id()
        # The first database again: starts.
        code, out = gentune(
            first, "serve", "--no-worker", "--port", "0", wait_for="startup complete"
        )
        assert "startup complete" in out, out
        for args in (("serve", "--no-worker", "--port", "0"), ("worker",)):
            code, out = gentune(second, *args)
            words = " ".join(out.split())
            assert code == 2, out
            assert f"the artifact folder {artifacts} belongs to another database" in words
            assert "set GENTUNE_ARTIFACT_DIR" in words
        assert json.loads((artifacts / "gentune-store.json").read_text()) == marker
    finally:
        cleanup()  # type: ignore[operator]
        get_engine(second).dispose()


def test_sample_grids_are_kept_at_powers_of_two_and_the_last_four(tmp_path: Path) -> None:
    """A grid comes with every evaluation; a trial of 100,000 epochs must not keep 100,000."""
    store = ArtifactStore(tmp_path)
    grids = GridRetention(store, 1, 7)
    named: set[int] = set()  # what the database names after each save
    for step in range(1, 1001):
        path, size, dropped = grids.save(step, lambda: b"png")
        assert path == artifact_path(1, 7, f"samples-{step}") and size == 3
        named.add(step)
        named -= {int(kind.removeprefix("samples-")) for kind in dropped}
        on_disk = {int(p.stem.split("-")[1]) for p in store.resolve(path).parent.glob("*.png")}
        assert named <= on_disk, "a grid the database names is never gone"
        assert len(on_disk - named) <= 1, "a dropped grid's file goes at the next save"
    powers = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
    assert named == powers | {997, 998, 999, 1000}
    assert grid_steps_kept(range(1, 31)) == {1, 2, 4, 8, 16, 27, 28, 29, 30}
