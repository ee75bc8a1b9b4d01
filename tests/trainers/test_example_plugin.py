"""The example plugin package (examples/plugin), installed with pip the way a user would install
it, is found through the ``gentune.trainers`` entry point and passes the trainer contract."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gentune.trainers.base import Trainer
from gentune.trainers.registry import get_trainer, reload_trainers
from tests.support.packages import install_into
from tests.trainers.contract import TrainerContract

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/plugin installed by pip into a folder of its own, put on sys.path."""
    site = tmp_path_factory.mktemp("plugin-site")
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("plugin-src") / "plugin")
    # pip builds in the source folder: a copy keeps the checkout clean.
    install_into(site, source)
    assert list(site.glob("gentune_example_plugin-*.dist-info"))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    reload_trainers()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("gentune_example_plugin")]:
            del sys.modules[name]
        reload_trainers()


class TestExamplePluginContract(TrainerContract):
    trainer_name = "ppca"
    small_params = {"epochs": 2, "batch_size": 512, "eval_samples": 100, "features": "random"}
    expected_evaluations = 2

    @pytest.fixture
    def trainer(self, plugin_site: Path) -> Trainer:
        trainer = get_trainer(self.trainer_name)
        assert trainer is not None, "the installed plugin is not in the registry"
        return trainer


def test_the_service_lists_the_installed_plugin(plugin_site: Path, client: TestClient) -> None:
    listed = {t["name"]: t for t in client.get("/api/v1/trainers").json()["data"]}
    assert "ppca" in listed
    assert "latent_dim" in listed["ppca"]["params_schema"]["properties"]
    assert "nll" in {m["name"] for m in listed["ppca"]["metrics"]}


def test_gentune_try_runs_the_installed_plugin(plugin_site: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_site), str(REPO_ROOT)]),
        "GENTUNE_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gentune.service.cli", "try", "ppca"]
        + ["-p", "epochs=3", "-p", "eval_samples=200", "--out", str(tmp_path / "last.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    fids = [
        float(line.split("fid ")[1].split(",")[0])
        for line in result.stdout.splitlines()
        if line.startswith("step ")
    ]
    assert len(fids) == 3 and fids[-1] < fids[0], result.stdout
    assert "dataset_fingerprint" in result.stdout
    assert (tmp_path / "last.pt").is_file()
