from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _shared_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One cache of feature nets and reference statistics for the trainer tests of a run."""
    monkeypatch.setenv("GENTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
