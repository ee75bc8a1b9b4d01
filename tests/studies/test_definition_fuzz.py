"""Malformed study definitions, made by mutating the shipped search spaces at random (seeded):
each one is either accepted, and then runnable (its definition as the database holds it is
plain JSON, validates again and configs drawn from its space parse with the trainer), or
refused with a 4xx whose errors name a field, and then nothing in the database changed."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gentune.service.config import Settings
from gentune.service.db.models import Artifact, Metric, Study, Trial, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.space import distribution
from gentune.service.studies.validation import validate_spec
from gentune.trainers.registry import get_trainer

SEARCH_SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
MUTATIONS_PER_FILE = 45
SEED = 20261124

HOSTILE_VALUES: list[Any] = [
    None,
    -1,
    0,
    10**12,
    1e308,
    -1e-308,
    float("nan"),
    float("inf"),
    "",
    "x" * 5000,
    [],
    {},
    True,
    "../../../etc/passwd",
    "/etc/passwd",
    "os:system",
    "<script>alert(1)</script>",
    "'; DROP TABLE gentune_studies; --",
    "\u202etxt.exe",
    {"nested": {"deeper": [1, 2, {"x": None}]}},
]


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a parsed document."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _structural(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    path = rng.choice(_paths(data))
    parent, key = _parent(data, path), path[-1]
    kind = rng.choice(["delete", "replace", "replace", "add", "retype", "swap_range"])
    if kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    elif kind == "add":
        target = parent[key] if isinstance(parent[key], dict) else data
        target[rng.choice(["extra", "seed", "low", "type", "metric", "x" * 300])] = rng.choice(
            HOSTILE_VALUES
        )
    elif kind == "retype":
        value = parent[key]
        parent[key] = (
            str(value) if not isinstance(value, str) else [value] if rng.random() < 0.5 else 7
        )
    else:  # a range turned around, where there is one
        ranges = [p for p in _paths(data) if p[-1] == "low"]
        if ranges:
            holder = _parent(data, rng.choice(ranges))
            if "high" in holder:
                holder["low"], holder["high"] = holder["high"], holder["low"]
    return data


def _textual(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    kind = rng.choice(["drop", "duplicate", "indent", "truncate", "garble", "equals"])
    at = rng.randrange(len(lines))
    if kind == "drop":
        del lines[at]
    elif kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "indent":
        lines[at] = rng.choice(["   ", "\t", ""]) + lines[at].lstrip()
    elif kind == "truncate":
        return text[: rng.randrange(len(text))]
    elif kind == "garble":
        position = rng.randrange(len(lines[at]) + 1)
        noise = "".join(rng.choice(":-[]{}&*!|>'\"#%@`\x00\u00e9\u4e2d ") for _ in range(3))
        lines[at] = lines[at][:position] + noise + lines[at][position:]
    else:
        lines[at] = lines[at].replace(":", " =", 1)
    return "\n".join(lines)


def _mutants(path: Path, fixes: dict[str, str]) -> list[tuple[str, str, str]]:
    """(label, content type, body) for one shipped file's mutations (after ``fixes``, text
    replacements that fit the file to this database)."""
    rng = random.Random(f"{SEED}-{path.name}")
    text = path.read_text()
    for old, new in fixes.items():
        text = text.replace(old, new)
    data = yaml.safe_load(text)
    made: list[tuple[str, str, str]] = []
    for i in range(MUTATIONS_PER_FILE):
        label = f"{path.name}#{i}"
        if rng.random() < 0.35:
            made.append((label + " text", "application/yaml", _textual(rng, text)))
            continue
        mutated = _structural(rng, data)
        if rng.random() < 0.3:
            mutated = _structural(rng, mutated)  # two mutations at once
        if rng.random() < 0.5:
            body = json.dumps(mutated, allow_nan=True)
            made.append((label + " json", "application/json", body))
        else:
            made.append((label + " yaml", "application/yaml", yaml.safe_dump(mutated)))
    return made


def _table_counts(database_url: str) -> tuple[int, ...]:
    with session_scope(database_url) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (Study, Trial, Metric, Artifact)
        )


def _finished_ring8_study(client: TestClient, settings: Settings) -> int:
    """search_spaces/gan2d_ring8.yaml submitted, with one completed trial recorded as a
    worker records it."""
    text = (SEARCH_SPACES[0].parent / "gan2d_ring8.yaml").read_text()
    created = client.post(
        "/api/v1/studies/yaml", content=text, headers={"Content-Type": "application/yaml"}
    )
    study_id = int(created.json()["id"])
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        params = {"lr_g": 1e-3, "lr_d": 2e-3, "z_dim": 4, "loss": "bce"}
        trial = repo.create_trial(study_id, 0, params, None, "defaults")
        repo.record_progress(trial.id, 1, {"mode_score": 0.5}, 0.5, 1, {})
        repo.finish_trial(trial.id, TrialState.completed)
    return study_id


def _stored(settings: Settings, study_id: int) -> dict[str, Any]:
    """The definition as the database holds it (what a worker will read), not as echoed."""
    with session_scope(settings.database_url) as session:
        spec = session.scalar(select(Study.spec).where(Study.id == study_id))
    assert isinstance(spec, dict)
    return spec


def _runnable(stored: dict[str, Any], settings: Settings) -> None:
    """What a worker does with a stored definition before the first trial, and then the
    trainer's parse of a few configs drawn from the space."""
    spec = StudySpec.model_validate(stored)
    validate_spec(spec, settings)
    trainer = get_trainer(spec.trainer)
    assert trainer is not None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = {name: distribution(d) for name, d in spec.search_space.items()}
    for _ in range(3):
        trial = study.ask(distributions)
        trainer.parse_params({**spec.params, **trial.params})
        study.tell(trial, 0.0)


@pytest.mark.parametrize("path", SEARCH_SPACES, ids=lambda p: p.name)
def test_mutated_definitions_are_accepted_and_runnable_or_refused_naming_a_field(
    client: TestClient, settings: Settings, path: Path
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outcomes = {"accepted": 0, "refused": 0}
    submit: dict[str, Callable[[str], Any]] = {
        "application/json": lambda body: client.post(
            "/api/v1/studies", content=body, headers={"Content-Type": "application/json"}
        ),
        "application/yaml": lambda body: client.post(
            "/api/v1/studies/yaml", content=body, headers={"Content-Type": "application/yaml"}
        ),
    }
    fixes = {}
    if "warm_start" in yaml.safe_load(path.read_text()):
        # The file warm-starts from study 1, the ring8 study: one with a completed trial.
        fixes["from_study: 1"] = f"from_study: {_finished_ring8_study(client, settings)}"
    for label, content_type, body in _mutants(path, fixes):
        before = _table_counts(settings.database_url)
        answer = submit[content_type](body)
        assert answer.status_code in (201, 413, 422), f"{label}: {answer.status_code} {body!r}"
        if answer.status_code == 201:
            outcomes["accepted"] += 1
            stored = _stored(settings, answer.json()["id"])
            json.dumps(stored, allow_nan=False)  # nothing JSON cannot carry was stored
            assert stored == answer.json()["definition"], f"{label}: the API echoed another one"
            _runnable(stored, settings)
            after = _table_counts(settings.database_url)
            assert after[0] == before[0] + 1 and after[1:] == before[1:], label
            continue
        outcomes["refused"] += 1
        refusal = answer.json()
        assert isinstance(refusal["detail"], str) and refusal["detail"], label
        assert refusal["errors"], f"{label}: no field named in {refusal}"
        for error in refusal["errors"]:
            assert error["field"] and isinstance(error["field"], str), f"{label}: {error}"
            assert error["message"], f"{label}: {error}"
        assert _table_counts(settings.database_url) == before, f"{label} changed the database"
    print(f"{path.name}: {outcomes}")
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0, outcomes
