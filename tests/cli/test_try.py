"""`gentune try`: one trial in-process, a line per evaluation, a table at the end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gentune.service.cli import app


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def fids_printed(output: str) -> list[float]:
    return [float(v) for v in re.findall(r"^step \d+: fid ([0-9.e+]+),", output, re.MULTILINE)]


@pytest.mark.slow
def test_three_dcgan_epochs_on_digits_print_fid_falling_from_the_first(tmp_path: Path) -> None:
    """The README's first image command, as a new user types it. GAN training is not
    monotone: FID falls from the first evaluation, not at every epoch."""
    result = CliRunner().invoke(
        app,
        ["try", "dcgan", "-p", "dataset=digits", "-p", "epochs=3", "--out", str(tmp_path / "g.pt")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    fids = fids_printed(result.output)
    assert len(fids) == 3 and max(fids[1:]) < fids[0] and min(fids) < 0.75 * fids[0], result.output
    assert "dataset_fingerprint" in result.output and "device: cpu" in result.output
    checkpoint = torch.load(tmp_path / "g.pt", weights_only=False)
    assert checkpoint["step"] == 3 and checkpoint["config"]["epochs"] == 3


def test_bad_params_and_names_are_explained() -> None:
    result = CliRunner().invoke(app, ["try", "dcgan", "-p", "lr_g=-1", "-p", "colour=red"])
    assert result.exit_code == 1
    assert "lr_g" in result.output and "colour" in result.output
    result = CliRunner().invoke(app, ["try", "os:system"])
    assert result.exit_code == 1 and "registered: dcgan, ddpm, gan2d, vae" in result.output
    result = CliRunner().invoke(app, ["try", "vae", "-p", "epochs"])
    assert result.exit_code == 1 and "key=value" in result.output
