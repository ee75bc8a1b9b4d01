"""Every study definition shipped in search_spaces/ (and the untuned suite under it) is valid
and runnable by its trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from gentune.service.config import Settings
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.validation import validate_spec
from tests.trainers.contract import RecordingReporter


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
FILES = sorted([*SPACES.glob("*.yaml"), *SPACES.glob("untuned/*.yaml")])


def test_there_are_example_studies() -> None:
    names = {f.name for f in FILES}
    assert {"gan2d_ring8.yaml", "gan2d_grid25.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SPACES)))
def test_example_is_valid_and_its_first_config_trains(path: Path) -> None:
    spec = StudySpec.model_validate(yaml.safe_load(path.read_text()))
    trainer = validate_spec(spec, Settings())
    # One step of the lowest corner of the space, to prove the config builds and reports.
    corner = {
        name: (d.choices[0] if d.type == "categorical" else d.low)
        for name, d in spec.search_space.items()
    }
    fields = trainer.Params.model_fields
    shortened = {"epochs": 1}
    for name, value in (("iters_per_epoch", 2), ("eval_samples", 100), ("sampling_steps", 2)):
        if name in fields:
            shortened[name] = value
    params = trainer.parse_params({**spec.params, **corner, **shortened})
    reporter = RecordingReporter()
    trainer.train(params, torch.device("cpu"), reporter)
    assert spec.objective.metric in reporter.reports[0][1]
