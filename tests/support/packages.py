"""Packages built and installed the way a user would, with pip and this interpreter, offline:
nothing comes from an index, and nothing but the package itself is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip(command: str, *args: str | Path) -> None:
    """``pip COMMAND --quiet --no-deps ARGS``; fails the test with pip's words."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", command, "--quiet", "--no-deps", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def install_into(target: Path, source: Path) -> None:
    """Install ``source`` (a wheel, or a project folder built in place) into ``target``."""
    pip("install", "--no-index", "--no-build-isolation", "--target", target, source)
