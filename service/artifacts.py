"""The artifact store: checkpoints on a local (or shared, mounted) directory.

Paths handed around are relative to the store's root; ``resolve`` refuses any that would
leave it. Writes go to a temporary file first and are renamed into place, so a reader never
sees half a checkpoint.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


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
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(data)

    def save_checkpoint(self, relative: str, checkpoint: dict[str, Any]) -> int:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        return self.write_bytes(relative, buffer.getvalue())

    def load_checkpoint(self, relative: str) -> dict[str, Any]:
        with self.resolve(relative).open("rb") as handle:
            checkpoint: dict[str, Any] = torch.load(handle, map_location="cpu", weights_only=False)
        return checkpoint


def artifact_path(study_id: int, trial_id: int, kind: str) -> str:
    """Where a trial's artifact lives: checkpoints ``best``/``last`` (.pt), grids ``samples-N``."""
    suffix = ".png" if kind.startswith("samples-") else ".pt"
    return f"studies/{study_id}/trials/{trial_id}/{kind}{suffix}"


def media_type(path: str) -> str:
    return "image/png" if path.endswith(".png") else "application/octet-stream"
