"""Limits and hostile input: every refusal is a 4xx naming its field, and stores nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gentune.service.app import create_app
from gentune.service.config import Settings
from tests.support.servers import LOCAL
from tests.support.specs import ring_spec

YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def tight(settings: Settings) -> Iterator[TestClient]:
    """A service with small limits, so the tests stay small."""
    limits = {"max_body_bytes": 64 * 1024, "max_eval_samples": 2000, "max_grid_points": 10_000}
    with TestClient(base_url=LOCAL, app=create_app(settings.model_copy(update=limits))) as client:
        yield client


def _count(client: TestClient) -> int:
    return int(client.get("/api/v1/studies").json()["count"])


def _refused(client: TestClient, answer: Any, status: int, field: str, says: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert field in fields, fields
    assert says in fields[field], fields[field]
    assert says in body["detail"]


def test_oversized_bodies_are_refused_before_they_are_read(tight: TestClient) -> None:
    before = _count(tight)
    declared = tight.post("/api/v1/studies", content=b" " * 100_000, headers=JSON)
    _refused(tight, declared, 413, "body", "at most 65,536 (GENTUNE_MAX_BODY_BYTES)")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"#" * 10_000 + b"\n"

    streamed = tight.post("/api/v1/studies/yaml", content=chunks(), headers=YAML)
    _refused(tight, streamed, 413, "body", "GENTUNE_MAX_BODY_BYTES")
    bad_length = tight.post(
        "/api/v1/studies", content=b"{}", headers={**JSON, "Content-Length": "x"}
    )
    assert bad_length.status_code == 400
    assert _count(tight) == before


def test_a_grid_of_a_billion_points_is_refused_with_its_size(tight: TestClient) -> None:
    spec = ring_spec(
        sampler={"type": "grid"},
        search_space={
            "lr_g": {"type": "float", "low": 0.001, "high": 1.0, "step": 0.001},
            "lr_d": {"type": "float", "low": 0.001, "high": 1.0, "step": 0.001},
            "hidden": {"type": "int", "low": 1, "high": 1000},
        },
    )
    answer = tight.post("/api/v1/studies", json=spec)
    _refused(tight, answer, 422, "search_space", "the grid has 1,000,000,000 points")
    assert "lr_g 1,000 × lr_d 1,000 × hidden 1,000" in answer.json()["detail"]


def test_search_space_size_sample_counts_and_string_lengths_are_bounded(
    tight: TestClient,
) -> None:
    before = _count(tight)
    many = ring_spec(
        search_space={f"p{i}": {"type": "int", "low": 1, "high": 9} for i in range(65)}
    )
    _refused(tight, tight.post("/api/v1/studies", json=many), 422, "search_space", "at most 64")

    spec = ring_spec()
    spec["params"] = {**spec["params"], "eval_samples": 5000}  # type: ignore[dict-item]
    _refused(
        tight,
        tight.post("/api/v1/studies", json=spec),
        422,
        "params.eval_samples",
        "GENTUNE_MAX_EVAL_SAMPLES",
    )
    searched = ring_spec(search_space={"eval_samples": {"type": "int", "low": 500, "high": 9000}})
    _refused(
        tight,
        tight.post("/api/v1/studies", json=searched),
        422,
        "search_space.eval_samples.high",
        "at most 2,000",
    )

    long = ring_spec()
    long["params"] = {**long["params"], "dataset": "x" * 5000}  # type: ignore[dict-item]
    _refused(
        tight,
        tight.post("/api/v1/studies", json=long),
        422,
        "params.dataset",
        "GENTUNE_MAX_STRING_LENGTH",
    )
    assert _count(tight) == before


def test_deep_nesting_is_refused_in_json_and_yaml(tight: TestClient) -> None:
    before = _count(tight)
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    spec = ring_spec()
    spec["params"] = {**spec["params"], "extra": nested}  # type: ignore[dict-item]
    answer = tight.post("/api/v1/studies", json=spec)
    assert answer.status_code == 422
    assert "nests deeper than 32 levels" in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"].startswith("params.extra.a.a")

    for body in (b"a: " + b"[" * 5000 + b"]" * 5000, b"a: &a [*a]\n"):
        _refused(
            tight,
            tight.post("/api/v1/studies/yaml", content=body, headers=YAML),
            422,
            "body",
            "nests deeper than 32 levels",
        )
    deep = b"[" * 20_000 + b"]" * 20_000
    deep_json = tight.post("/api/v1/studies", content=deep, headers=JSON)
    _refused(tight, deep_json, 422, "body", "could not be read as JSON")
    untyped = tight.post("/api/v1/studies", content=deep)  # no Content-Type: bytes, not JSON
    _refused(tight, untyped, 422, "body", "valid dictionary")
    assert _count(tight) == before


def test_yaml_aliases_that_expand_to_billions_are_refused(tight: TestClient) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    answer = tight.post("/api/v1/studies/yaml", content="\n".join(lines), headers=YAML)
    _refused(tight, answer, 422, "body", "once its YAML aliases are expanded")


def test_unregistered_trainer_names_import_nothing(
    tight: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that, if anything imported it, would leave a file behind.
    marker = tmp_path / "imported"
    (tmp_path / "gentune_probe_module.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\nclass Trainer: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (
        "gentune_probe_module:Trainer",
        "gentune_probe_module.Trainer",
        "gentune_probe_module",
        "os:system",
    ):
        answer = tight.post("/api/v1/studies", json=ring_spec(trainer=name))
        _refused(tight, answer, 422, "trainer", "no trainer is registered")
    assert not marker.exists(), "a trainer name made the service import a module"
    assert "gentune_probe_module" not in sys.modules


def test_unknown_routes_and_methods_answer_in_the_error_shape(tight: TestClient) -> None:
    missing = tight.get("/api/v1/trials/1/artifacts/..%2F..%2Fetc%2Fpasswd")
    assert missing.status_code == 404 and missing.json()["errors"] == []
    wrong = tight.put("/api/v1/studies")
    assert wrong.status_code == 405 and "detail" in wrong.json()
