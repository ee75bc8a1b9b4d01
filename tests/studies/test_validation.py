"""Bad study definitions get 422 with the field's path and a sentence; nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from gentune.service.config import Settings
from gentune.service.db.models import Study
from gentune.service.db.session import session_scope
from tests.support.specs import ring_spec


def errors_of(client: TestClient, spec: dict[str, Any]) -> dict[str, str]:
    before = client.get("/api/v1/studies").json()["count"]
    response = client.post("/api/v1/studies", json=spec)
    assert response.status_code == 422, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert client.get("/api/v1/studies").json()["count"] == before, "a refused study was stored"
    return {e["field"]: e["message"] for e in body["errors"]}


def with_space(**space: Any) -> dict[str, Any]:
    spec = ring_spec()
    spec["search_space"] = space
    return spec


def dcgan_spec(params: dict[str, Any], metric: str = "fid") -> dict[str, Any]:
    return {
        "name": "digits-test",
        "trainer": "dcgan",
        "params": {"epochs": 1, **params},
        "search_space": {"lr_g": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}},
        "objective": {"metric": metric, "direction": "minimize"},
        "budget": {"n_trials": 2},
    }


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (ring_spec(trainer="os:system"), "trainer", "no trainer is registered as 'os:system'"),
        (ring_spec(trainer="nope"), "trainer", "registered trainers: dcgan, ddpm, gan2d, vae"),
        (ring_spec(params={"epochs": 0}), "params.epochs", "greater than or equal to 1"),
        (ring_spec(params={"dataset": "moons"}), "params.dataset", "'ring8' or 'grid25'"),
        (ring_spec(params={"colour": "red"}), "params.colour", "has no parameter 'colour'"),
        (
            with_space(lr_g={"type": "float", "low": 0.01, "high": 0.001}),
            "search_space.lr_g.high",
            "must be above low",
        ),
        (
            with_space(lr_g={"type": "float", "low": 0.0, "high": 0.01, "log": True}),
            "search_space.lr_g.low",
            "log range must lie above 0",
        ),
        (
            with_space(lr_g={"type": "float", "low": 1e-4, "high": 5.0}),
            "search_space.lr_g.high",
            "not a valid lr_g",
        ),
        (
            with_space(loss={"type": "categorical", "choices": ["bce", "l2"]}),
            "search_space.loss.choices.1",
            "'l2' is not a valid loss",
        ),
        (
            with_space(loss={"type": "categorical", "choices": []}),
            "search_space.loss.choices",
            "at least 1",
        ),
        (
            with_space(batch_size={"type": "float", "low": 64, "high": 512}),
            "search_space.batch_size.type",
            "use type: int",
        ),
        (with_space(z_dim={"low": 1, "high": 8}), "search_space.z_dim", "needs a 'type'"),
        (
            with_space(z_dim={"type": "integer", "low": 1, "high": 8}),
            "search_space.z_dim",
            "is not one of",
        ),
        (
            with_space(depth={"type": "int", "low": 1, "high": 3, "stepp": 1}),
            "search_space.depth.stepp",
            "not a known field",
        ),
        (
            with_space(nope={"type": "int", "low": 1, "high": 3}),
            "search_space.nope",
            "has no parameter 'nope'",
        ),
        (
            ring_spec(objective={"metric": "fid", "direction": "minimize"}),
            "objective.metric",
            "does not report 'fid'",
        ),
        (
            ring_spec(objective={"metric": "modes", "direction": "up"}),
            "objective.direction",
            "'minimize' or 'maximize'",
        ),
        (ring_spec(budget={"n_trials": 0}), "budget.n_trials", "greater than or equal to 1"),
        (ring_spec(budget={"n_trials": 10**9}), "budget.n_trials", "at most 10000 trials"),
        (
            ring_spec(budget={"n_trials": 5, "max_concurrent": 1000}),
            "budget.max_concurrent",
            "at most 64",
        ),
        (ring_spec(resources={"cpu": 0}), "resources.cpu", "greater than 0"),
        (ring_spec(resources={"gpu": 1.5}), "resources", "whole number"),
        (ring_spec(sampler={"type": "annealing"}), "sampler", "is not one of"),
        (
            ring_spec(pruner={"type": "median", "n_warmup_steps": -1}),
            "pruner.n_warmup_steps",
            "greater than or equal to 0",
        ),
        (ring_spec(pruner={"type": "threshold"}), "pruner", "give lower, upper or both"),
        (ring_spec(name="../../etc"), "name", "should match pattern"),
        (
            ring_spec(
                params={"lr_g": 0.001},
                search_space={"lr_g": {"type": "float", "low": 1e-4, "high": 1e-2}},
            ),
            "body",
            "both in params and in search_space",
        ),
        (ring_spec(sampler={"type": "grid"}), "search_space.lr_g", "grid search needs a step"),
        (dcgan_spec({"dataset": "imagenet"}), "params.dataset", "'digits', 'mnist'"),
        (dcgan_spec({"dataset": "image_folder"}), "params.data_dir", "needs data_dir"),
        (
            dcgan_spec({"dataset": "mnist", "data_dir": "../../etc"}),
            "params.data_dir",
            "leaves the data root",
        ),
        (dcgan_spec({"dataset": "mnist", "data_dir": "/etc"}), "params.data_dir", "relative"),
        (dcgan_spec({"data_dir": "mine"}), "params.data_dir", "takes no data_dir"),
        (dcgan_spec({"image_size": 24}), "params.image_size", "16, 32 or 64"),
        (dcgan_spec({"augment_translation": 0.9}), "params.augment_translation", "0.5"),
        (
            dcgan_spec({"features": "random"}, metric="is"),
            "objective.metric",
            "gives no value of 'is'",
        ),
        (
            ring_spec(stability={"rules": [{"type": "vibes"}]}),
            "stability.rules.0",
            "type vibes is not one of 'non_finite', 'divergence'",
        ),
        (
            ring_spec(
                stability={"rules": [{"type": "divergence", "metrics": ["g_loss"], "factor": 0.5}]}
            ),
            "stability.rules.0.factor",
            "greater than 1",
        ),
        (
            ring_spec(stability={"rules": [{"type": "mode_collapse", "min_ratio": 1.5}]}),
            "stability.rules.0.min_ratio",
            "less than 1",
        ),
        (
            ring_spec(
                stability={
                    "rules": [
                        {"type": "gradient_explosion", "metrics": ["grad_norm_g", "gard_norm_d"]}
                    ]
                }
            ),
            "stability.rules.0.metrics.1",
            "needs 'gard_norm_d', which trainer gan2d does not report",
        ),
        (
            ring_spec(stability={"rules": [{"type": "stalled"}, {"type": "stalled"}]}),
            "stability",
            "stalled listed more than once",
        ),
        (
            ring_spec(stability={"rules": [{"type": "stalled", "patience": 0}]}),
            "stability.rules.0.patience",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_definitions_name_the_field(
    client: TestClient, spec: dict[str, Any], field: str, words: str
) -> None:
    errors = errors_of(client, spec)
    assert field in errors, errors
    assert words in errors[field], errors[field]


def test_missing_objective_is_reported(client: TestClient) -> None:
    spec = ring_spec()
    del spec["objective"]
    assert errors_of(client, spec) == {"objective": "is required"}


def test_malformed_json_is_a_clear_422(client: TestClient) -> None:
    response = client.post(
        "/api/v1/studies", content=b'{"name": "x",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


def test_huge_grid_is_refused(client: TestClient) -> None:
    spec = with_space(
        lr_g={"type": "float", "low": 1e-6, "high": 1.0, "step": 1e-6},
        lr_d={"type": "float", "low": 1e-6, "high": 1.0, "step": 1e-6},
    )
    spec["sampler"] = {"type": "grid"}
    errors = errors_of(client, spec)
    assert "points" in errors["search_space"]


def test_a_valid_grid_is_accepted(client: TestClient) -> None:
    spec = with_space(
        loss={"type": "categorical", "choices": ["bce", "hinge"]},
        depth={"type": "int", "low": 1, "high": 3},
    )
    spec["sampler"] = {"type": "grid"}
    assert client.post("/api/v1/studies", json=spec).status_code == 201


def test_an_augmented_image_study_is_accepted(client: TestClient) -> None:
    spec = dcgan_spec({"augment_flip": True, "augment_cutout": 0.25, "augment_color": True})
    spec["search_space"]["augment_translation"] = {"type": "categorical", "choices": [0.0, 0.125]}
    assert client.post("/api/v1/studies", json=spec).status_code == 201


# --- values JSON cannot carry, numbers too large to use, keys given twice ------------------

NAN, INF = float("nan"), float("inf")


def _submit(client: TestClient, body: str, content_type: str) -> httpx.Response:
    path = "/api/v1/studies" if content_type == "application/json" else "/api/v1/studies/yaml"
    return client.post(path, content=body, headers={"Content-Type": content_type})


def _refused(client: TestClient, settings: Settings, body: str, content_type: str) -> dict:
    before = _stored_definitions(settings)
    answer = _submit(client, body, content_type)
    assert answer.status_code == 422, answer.text
    assert _stored_definitions(settings) == before, "a refused study was stored"
    return {e["field"]: e["message"] for e in answer.json()["errors"]}


def _stored_definitions(settings: Settings) -> list[Any]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(Study.spec).order_by(Study.id)))


def _with(path: str, value: Any, **top: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {**ring_spec(), **top}
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value
    return spec


NON_FINITE = [
    ("search_space.lr_g.step", {"type": "float", "low": 1e-4, "high": 1e-2, "step": NAN}),
    ("sampler.sigma0", {"type": "cmaes", "sigma0": INF}),
    ("pruner.lower", {"type": "threshold", "lower": NAN}),
    ("pruner.upper", {"type": "threshold", "upper": -INF}),
    ("pruner.min_delta", {"type": "patient", "patience": 2, "min_delta": INF}),
    ("params.iters_per_epoch", NAN),
    ("points_to_evaluate.0.lr_g", [{"lr_g": INF}]),
    ("search_space.loss.choices.1", {"type": "categorical", "choices": ["bce", NAN]}),
]


@pytest.mark.parametrize(("field", "value"), NON_FINITE, ids=[f for f, _ in NON_FINITE])
@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_nan_and_infinity_are_refused_wherever_they_stand(
    client: TestClient, settings: Settings, field: str, value: Any, content_type: str
) -> None:
    top, _, rest = field.partition(".")
    if top in ("sampler", "pruner"):
        spec = {**ring_spec(), top: value}
    elif top == "points_to_evaluate":
        spec = {**ring_spec(), top: value}
    elif top == "search_space":
        name = rest.split(".")[0]
        spec = ring_spec()
        spec["search_space"] = {**spec["search_space"], name: value}  # type: ignore[dict-item]
    else:
        spec = _with(field, value)
    body = json.dumps(spec) if content_type == "application/json" else yaml.safe_dump(spec)
    errors = _refused(client, settings, body, content_type)
    assert field in errors, errors
    assert "finite" in errors[field], errors


@pytest.mark.parametrize(
    ("label", "spec", "field", "words"),
    [
        (
            "a step too small to count",
            _with(
                "search_space.lr_g",
                {"type": "float", "low": 1e-4, "high": 1e-2, "step": 5e-324},
                sampler={"type": "grid"},
            ),
            "search_space.lr_g.step",
            "more than a float can tell apart",
        ),
        (
            "a 401-digit integer",
            _with("points_to_evaluate", [{"lr_g": 10**400}]),
            "points_to_evaluate.0.lr_g",
            "an integer of 401 digits",
        ),
        ("a huge seed", _with("params.seed", -(2**64)), "params.seed", "an integer of 20 digits"),
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_numbers_too_large_to_use_are_refused(
    client: TestClient,
    settings: Settings,
    label: str,
    spec: dict[str, Any],
    field: str,
    words: str,
    content_type: str,
) -> None:
    body = json.dumps(spec) if content_type == "application/json" else yaml.safe_dump(spec)
    errors = _refused(client, settings, body, content_type)
    assert words in errors.get(field, ""), (label, errors)


def test_yaml_types_json_has_not_and_keys_given_twice_are_refused(
    client: TestClient, settings: Settings
) -> None:
    text = yaml.safe_dump(ring_spec(), sort_keys=False)
    cases = {
        "a binary value": (text + "note: !!binary aGVsbG8=\n", "note", "binary data"),
        "a date": (text + "note: 2026-12-04\n", "note", "a date or time"),
        "a set": (text + "note: !!set {a, b}\n", "note", "a set"),
        "a key twice": (text + "name: second\n", "name", "is given twice"),
        "a nested key twice": (
            text.replace("  lr_g:\n", "  lr_g:\n    type: float\n", 1),
            "search_space.lr_g.type",
            "is given twice",
        ),
    }
    for label, (body, field, words) in cases.items():
        errors = _refused(client, settings, body, "application/yaml")
        assert words in errors.get(field, ""), (label, errors)
    duplicated = json.dumps(ring_spec()).replace('"trainer": ', '"trainer": "vae", "trainer": ', 1)
    errors = _refused(client, settings, duplicated, "application/json")
    assert "is given twice" in errors["trainer"], errors
    # The same definitions without the faults are stored, and as given.
    assert _submit(client, text, "application/yaml").status_code == 201
    assert _submit(client, json.dumps(ring_spec()), "application/json").status_code == 201
