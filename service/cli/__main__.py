"""``python -m gentune.service.cli``: the ``gentune`` command (how ``serve`` starts its worker)."""

from __future__ import annotations

import os

from gentune.service.cli import app

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
