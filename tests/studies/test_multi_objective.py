"""Multi-objective and constrained study definitions, and the Pareto front."""

from __future__ import annotations

import itertools
import random

from fastapi.testclient import TestClient

from gentune.service.schemas.study import Constraint
from gentune.service.studies.pareto import dominates, pareto_front
from tests.support.specs import ring_spec

TWO = [
    {"metric": "mode_score", "direction": "maximize"},
    {"metric": "params_millions", "direction": "minimize"},
]


def _errors(response: object) -> dict[str, str]:
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    return {e["field"]: e["message"] for e in response.json()["errors"]}  # type: ignore[attr-defined]


def test_objectives_alone_make_the_first_the_primary(client: TestClient) -> None:
    spec = ring_spec(name="multi", objectives=TWO, sampler={"type": "nsga2", "seed": 1})
    del spec["objective"]
    created = client.post("/api/v1/studies", json=spec)
    assert created.status_code == 201, created.text
    stored = created.json()["definition"]
    assert stored["objective"] == TWO[0]
    assert stored["objectives"] == TWO
    assert stored["sampler"]["population_size"] == 50
    again = client.post("/api/v1/studies", json=stored)
    assert again.status_code == 201, "the stored definition is valid as it is"


def test_bad_objectives_and_constraints_are_refused_by_field(client: TestClient) -> None:
    before = client.get("/api/v1/studies").json()["count"]
    cases = [
        (
            {"objectives": TWO, "sampler": {"type": "cmaes"}},
            "sampler cmaes optimizes one objective",
        ),
        (
            {"objectives": TWO, "objective": {"metric": "frechet", "direction": "minimize"}},
            "must be one of objectives",
        ),
        ({"objectives": [TWO[0], TWO[0]]}, "objectives repeat a metric"),
        ({"objectives": TWO[:1]}, "at least 2"),
        ({"constraints": [{"metric": "params_millions"}]}, "give min, max or both"),
        ({"constraints": [{"metric": "frechet", "min": 2, "max": 1}]}, "nothing is feasible"),
    ]
    for overrides, words in cases:
        response = client.post("/api/v1/studies", json=ring_spec(**overrides))
        assert response.status_code == 422, (overrides, response.text)
        assert words in response.text, (words, response.text)
    unknown = ring_spec(
        objectives=[TWO[0], {"metric": "sharpness", "direction": "minimize"}],
        constraints=[{"metric": "size", "max": 1}],
    )
    errors = _errors(client.post("/api/v1/studies", json=unknown))
    assert "does not report 'sharpness'" in errors["objectives.1.metric"]
    assert "does not report 'size'" in errors["constraints.0.metric"]
    assert client.get("/api/v1/studies").json()["count"] == before


def test_constraint_violation_is_how_far_outside() -> None:
    both = Constraint(metric="m", min=1.0, max=2.0)
    assert [both.violation(v) for v in (0.5, 1.0, 1.5, 2.0, 2.5)] == [0.5, 0, 0, 0, 0.5]
    assert both.violation(None) == float("inf") and both.violation(float("nan")) == float("inf")


def test_pareto_front_matches_brute_force() -> None:
    rng = random.Random(0)
    for directions in (["minimize", "maximize"], ["minimize", "minimize", "maximize"]):
        points = [
            (i, [float(rng.randint(0, 6)) for _ in directions]) for i in range(60)
        ]  # small integers: ties and duplicates on purpose
        brute = [
            i
            for i, values in points
            if not any(dominates(other, values, directions) for _, other in points)
        ]
        assert pareto_front(points, directions) == brute
    assert not dominates([1, 1], [1, 1], ["minimize", "minimize"]), "equal points do not"
    for a, b in itertools.permutations([[1.0, 2.0], [2.0, 1.0]], 2):
        assert not dominates(a, b, ["minimize", "minimize"])


def test_class_kl_is_an_objective_or_constraint_only_with_classes(client: TestClient) -> None:
    spec = {
        "name": "balanced-digits",
        "trainer": "dcgan",
        "params": {"dataset": "digits", "features": "domain", "epochs": 2},
        "search_space": {"lr_g": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}},
        "objectives": [
            {"metric": "fid", "direction": "minimize"},
            {"metric": "class_kl", "direction": "minimize"},
        ],
        "constraints": [{"metric": "class_kl", "max": 0.5}],
        "sampler": {"type": "nsga2"},
    }
    assert client.post("/api/v1/studies", json=spec).status_code == 201
    unlabelled = {**spec, "params": {**spec["params"], "features": "random"}}
    errors = _errors(client.post("/api/v1/studies", json=unlabelled))
    assert "gives no value of 'class_kl'" in errors["objectives.1.metric"]
    assert "gives no value of 'class_kl'" in errors["constraints.0.metric"]
