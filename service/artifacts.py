"""The artifact store: checkpoints on a local (or shared, mounted) directory.

Paths handed around are relative to the store's root; ``resolve`` refuses any that would
leave it. Writes go to a temporary file first and are renamed into place, so a reader never
sees half a checkpoint. ``CheckpointRetention`` bounds what a trial keeps on disk.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from gentune.trainers.base import load_checkpoint


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def resolve(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"artifact path {relative!r} leaves the artifact store")
        return path

    def write_bytes(self, relative: str, data: bytes) -> int:
        """Write ``data`` atomically at ``relative``; return its size."""
        path = self.resolve(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an API under another uid reads it too
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)
        return len(data)

    def save_checkpoint(self, relative: str, checkpoint: dict[str, Any]) -> int:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        return self.write_bytes(relative, buffer.getvalue())

    def load_checkpoint(self, relative: str, trusted: Sequence[Any] = ()) -> dict[str, Any]:
        """The checkpoint at ``relative``, read without running code (see
        ``trainers.base.load_checkpoint``; ``trusted``: a trainer's ``checkpoint_globals``)."""
        with self.resolve(relative).open("rb") as handle:
            return load_checkpoint(handle, "cpu", trusted)


STORE_MARKER = "gentune-store.json"
"""The file that names the database an artifact store belongs to."""


class StoreOfAnotherDatabase(RuntimeError):
    """The artifact folder holds another database's files (studies are named by ids, which
    every database starts at 1: sharing a folder would overwrite them)."""


def bind_store(root: str | Path, database_id: str, database: str) -> None:
    """Bind the artifact store at ``root`` to the database ``database_id`` (``database``: how
    to name it in messages): the first use writes the marker, later ones check it."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / STORE_MARKER
    try:
        bound = json.loads(marker.read_text())["database_id"]
    except FileNotFoundError:
        ArtifactStore(folder).write_bytes(
            STORE_MARKER, json.dumps({"database_id": database_id}).encode()
        )
        return
    except (ValueError, KeyError, TypeError) as error:
        raise StoreOfAnotherDatabase(
            f"{marker} is not a store marker gentune wrote ({error}); move it away if the "
            "folder is this database's"
        ) from None
    if bound != database_id:
        raise StoreOfAnotherDatabase(
            f"the artifact folder {folder} belongs to another database (id {bound}), not to "
            f"{database} (id {database_id}): studies of both would write over each other's "
            "files, since each database numbers its studies from 1. Give this database a "
            "folder of its own: set GENTUNE_ARTIFACT_DIR"
        )


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable: until the folder itself is synced, a power cut can
    undo the rename while the database, committed after it, names the new file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


CHECKPOINT_FILE = re.compile(r"^\.?checkpoint-(\d+)\.pt(\..*\.tmp)?$")
"""A trial's checkpoint files, and the temporary files a killed writer may leave behind."""


class CheckpointRetention:
    """Keeps one trial's ``keep_best`` best checkpoints (by the objective) and its last.

    Each kept evaluation is one file, ``checkpoint-<step>.pt``, written once; the kinds
    ``best``, ``best-2`` … ``best-k`` and ``last`` name files among them (``best`` and ``last``
    are often the same file). A file that falls out of the kept set is deleted one save later:
    until the study's driver has recorded the new set, the database still points at the old
    one, and a download must not find it gone. Leftovers of an earlier attempt of the trial go
    at its first save; ``sweep_checkpoints`` tidies the trial's folder once it has ended.
    """

    def __init__(
        self,
        store: ArtifactStore,
        study_id: int,
        trial_id: int,
        *,
        keep_best: int,
        keep_last: bool,
        maximize: bool,
    ) -> None:
        self.store = store
        self.study_id = study_id
        self.trial_id = trial_id
        self.keep_best = keep_best
        self.keep_last = keep_last
        self.maximize = maximize
        self.ranked: list[tuple[float, int]] = []
        """(value, step) of the kept best evaluations, best first."""
        self.sizes: dict[int, int] = {}
        self.last: int | None = None
        self.reported: set[int] = set()
        """Steps of the kept set the previous save returned (the database may point at them)."""

    def _enters_top(self, value: float | None) -> bool:
        if self.keep_best == 0 or value is None or not math.isfinite(value):
            return False
        if len(self.ranked) < self.keep_best:
            return True
        worst = self.ranked[-1][0]
        return value > worst if self.maximize else value < worst

    def save(
        self, step: int, value: float | None, state: Callable[[], dict[str, Any]]
    ) -> dict[str, tuple[str, int, int]]:
        """Save the checkpoint at ``step`` if the policy keeps it; return every kept kind
        as ``kind -> (path, size, step)``."""
        enters = self._enters_top(value)
        if not enters and not self.keep_last:
            return {}
        if step not in self.sizes:
            self.sizes[step] = self.store.save_checkpoint(self._path(step), state())
        if enters:
            assert value is not None
            self.ranked.append((value, step))
            self.ranked.sort(key=lambda pair: -pair[0] if self.maximize else pair[0])
            del self.ranked[self.keep_best :]
        if self.keep_last:
            self.last = step
        kinds = {
            ("best" if rank == 1 else f"best-{rank}"): kept_step
            for rank, (_, kept_step) in enumerate(self.ranked, start=1)
        }
        if self.last is not None:
            kinds["last"] = self.last
        kept = set(kinds.values())
        for gone in sweep_checkpoints(
            self.store, self.study_id, self.trial_id, kept | self.reported
        ):
            self.sizes.pop(gone, None)
        self.reported = kept
        return {kind: (self._path(s), self.sizes[s], s) for kind, s in kinds.items()}

    def _path(self, step: int) -> str:
        return artifact_path(self.study_id, self.trial_id, f"checkpoint-{step}")


def sweep_checkpoints(
    store: ArtifactStore, study_id: int, trial_id: int, keep: set[int]
) -> list[int]:
    """Delete a trial's checkpoint files but those of the steps in ``keep``, and any temporary
    file a writer killed mid-write left; return the steps deleted."""
    folder = store.resolve(artifact_path(study_id, trial_id, "x")).parent
    if not folder.is_dir():
        return []
    deleted = []
    for path in folder.iterdir():
        match = CHECKPOINT_FILE.match(path.name)
        if match is None:
            continue
        step = int(match.group(1))
        if match.group(2) is not None:  # left by a writer killed mid-write
            path.unlink(missing_ok=True)
        elif step not in keep:
            path.unlink(missing_ok=True)
            deleted.append(step)
    return deleted


GRIDS_KEPT_LAST = 4
"""Sample grids a trial keeps from its latest evaluations (besides those at powers of 2)."""


def grid_steps_kept(steps: Iterable[int], keep_last: int = GRIDS_KEPT_LAST) -> set[int]:
    """The grid steps a trial keeps: its last ``keep_last`` and those at powers of 2 (1, 2,
    4, 8, ...), so that a trial of n evaluations keeps about log2(n) + ``keep_last`` grids
    and its page still shows how the samples grew."""
    ordered = sorted(set(steps))
    powers = {s for s in ordered if s > 0 and s & (s - 1) == 0}
    return set(ordered[-keep_last:]) | powers if keep_last else powers


class GridRetention:
    """Bounds one trial's sample grids on disk (see ``grid_steps_kept``). A grid that falls
    out of the kept set is named at once (``save`` returns its kind, for the database to
    forget) and its file deleted one save later, once the database no longer names it."""

    def __init__(self, store: ArtifactStore, study_id: int, trial_id: int) -> None:
        self.store = store
        self.study_id = study_id
        self.trial_id = trial_id
        self.steps: list[int] = []
        self.doomed: list[int] = []

    def path(self, step: int) -> str:
        return artifact_path(self.study_id, self.trial_id, f"samples-{step}")

    def save(self, step: int, png: Callable[[], bytes]) -> tuple[str, int, list[str]]:
        """Write the grid of ``step``; return its path, its size and the kinds dropped."""
        for old in self.doomed:
            self.store.resolve(self.path(old)).unlink(missing_ok=True)
        path = self.path(step)
        size = self.store.write_bytes(path, png())
        self.steps.append(step)
        kept = grid_steps_kept(self.steps)
        self.doomed = [s for s in self.steps if s not in kept]
        self.steps = [s for s in self.steps if s in kept]
        return path, size, [f"samples-{s}" for s in self.doomed]


def artifact_path(study_id: int, trial_id: int, kind: str) -> str:
    """Where a trial's artifact lives: checkpoints ``checkpoint-N`` (.pt), grids ``samples-N``."""
    suffix = ".png" if kind.startswith("samples-") else ".pt"
    return f"studies/{study_id}/trials/{trial_id}/{kind}{suffix}"


def is_checkpoint(kind: str) -> bool:
    """Whether an artifact kind names a checkpoint (not a sample grid)."""
    return kind in ("best", "last") or kind.startswith("best-")


def media_type(path: str) -> str:
    return "image/png" if path.endswith(".png") else "application/octet-stream"
