"""gentune as a user installs it: the wheel built from this tree, in a new venv, run from
another folder. It answers to one import name, ``gentune``, and claims none of the generic
ones (``service``, ``trainers``) that a user's own project may well have."""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.support.packages import install_into, pip

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, importlib.util, json, pkgutil, sys
import gentune
modules = [m.name for m in pkgutil.walk_packages(gentune.__path__, "gentune.")]
for name in modules:
    if ".migrations." not in name:
        importlib.import_module(name)
from gentune import MetricSpec, Reporter, Trainer, TrainerParams
from gentune.trainers.registry import trainer_names
print(json.dumps({
    "file": gentune.__file__,
    "modules": modules,
    "generic": {
        name: list(spec.submodule_search_locations or [spec.origin]) if spec else []
        for name in ("service", "trainers")
        for spec in [importlib.util.find_spec(name)]
    },
    "gentune.trainers": list(importlib.import_module("gentune.trainers").__path__),
    "builtins": trainer_names(),
    "public": sorted(gentune.__all__),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree's package, built from a copy of the tree: pip builds in the
    source folder, and a stale build/ there would carry files the tree no longer has."""
    source = tmp_path_factory.mktemp("source") / "gentune"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "benchmarks", "docs"
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-build-isolation", "--wheel-dir", out, source)
    (found,) = out.glob("gentune-*.whl")
    return found


@pytest.fixture(scope="module")
def new_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel; its python."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]))
    install_into(site, wheel)
    # gentune's dependencies (torch, ray, ...) from this interpreter, as a plain path: the .pth
    # files there (this checkout's editable install among them) are not read.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def run(command: list[str | Path], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_the_wheel_answers_to_gentune_only_from_a_new_venv(new_venv: Path, tmp_path: Path) -> None:
    # A user's project with folders of the generic names gentune's source tree uses.
    for name in ("service", "trainers"):
        (tmp_path / name).mkdir()
    found = json.loads(run([new_venv, "-c", PROBE], cwd=tmp_path).splitlines()[-1])
    assert Path(found["file"]).is_relative_to(new_venv.parents[1]), found["file"]
    # From the user's folder the generic names are the user's own, and gentune's still works.
    assert found["generic"] == {
        "service": [str(tmp_path / "service")],
        "trainers": [str(tmp_path / "trainers")],
    }
    assert Path(found["gentune.trainers"][0]).is_relative_to(new_venv.parents[1])
    (site,) = new_venv.parents[1].glob("lib/python*/site-packages")
    installed = {p.name for p in site.iterdir() if p.suffix not in (".pth", ".dist-info")}
    assert installed - {"bin", "__pycache__"} == {"gentune"}
    assert {"gentune.service.cli", "gentune.trainers.gan2d"} <= set(found["modules"])
    assert {"gan2d", "dcgan", "vae", "ddpm"} <= set(found["builtins"])
    assert {"Trainer", "TrainerParams", "Reporter", "MetricSpec"} <= set(found["public"])


def test_the_gentune_command_of_the_wheel_runs(new_venv: Path, tmp_path: Path) -> None:
    command = (
        "import importlib.metadata as m, sys; sys.argv = ['gentune', '--help'];"
        " m.entry_points(group='console_scripts', name='gentune')[0].load()()"
    )
    done = subprocess.run([new_venv, "-c", command], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "serve" in done.stdout and "submit" in done.stdout
