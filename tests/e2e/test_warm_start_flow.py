"""Warm starts on the real service: given configs and an earlier study's best run first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import Service
from tests.support.specs import quadratic_spec

pytestmark = pytest.mark.slow


def _trials(service: Service, study_id: int) -> list[dict[str, Any]]:
    page = service.api("GET", f"/studies/{study_id}/trials", params={"limit": 100}).json()
    return sorted(page["data"], key=lambda t: t["number"])


def _submit(service: Service, spec: dict[str, Any]) -> int:
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@pytest.mark.one_database  # on Postgres, tests/studies/test_warm_start.py covers the records
def test_points_and_an_earlier_studys_best_run_first(service: Service) -> None:
    source = _submit(service, quadratic_spec("source", 4, 2))
    assert service.wait_for_study(source, ("completed", "failed"), 240)["state"] == "completed"
    best_first = sorted(
        (t for t in _trials(service, source) if t["state"] == "completed"),
        key=lambda t: (t["value"], t["number"]),
    )

    warm = _submit(
        service,
        quadratic_spec(
            "warm",
            5,
            1,  # one at a time: the queued configs run in their order
            points_to_evaluate=[{"lr": 0.123}],
            warm_start={"from_study": source, "top_k": 2},
        ),
    )
    refine = subprocess.run(
        [
            sys.executable,
            "-m",
            "gentune.service.cli",
            "refine",
            str(source),
            "--trials",
            "3",
            "--submit",
        ]
        + ["--url", service.url],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refine.returncode == 0, refine.stderr
    found = re.search(r"study (\d+) \(source-refined\) queued", refine.stdout)
    assert found, refine.stdout
    refined = int(found.group(1))

    for study_id in (warm, refined):
        study = service.wait_for_study(study_id, ("completed", "failed"), 240)
        assert study["state"] == "completed", service.log_tail()

    trials = _trials(service, warm)
    assert [t["origin"] for t in trials] == [
        "defaults",
        "points_to_evaluate[0]",
        f"warm start: study {source} trial {best_first[0]['id']}",
        f"warm start: study {source} trial {best_first[1]['id']}",
        None,
    ]
    assert trials[0]["params"] == {"lr": 0.1}, "the quadratic trainer's default"
    assert trials[1]["params"] == {"lr": 0.123}
    for rerun, earlier in zip(trials[2:4], best_first[:2], strict=True):
        assert rerun["params"] == earlier["params"]
        assert rerun["value"] == pytest.approx(earlier["value"]), "the same config, the same loss"

    definition = service.api("GET", f"/studies/{refined}").json()["definition"]
    lr = definition["search_space"]["lr"]
    assert lr["high"] - lr["low"] == pytest.approx(0.245, abs=0.002), "half of [0.01, 0.5]"
    assert lr["low"] <= best_first[0]["params"]["lr"] <= lr["high"]
    refined_trials = _trials(service, refined)
    assert len(refined_trials) == 3
    origins = {t["origin"] for t in refined_trials[:2]}
    assert f"warm start: study {source} trial {best_first[0]['id']}" in origins


SEARCH_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def _shortened(spec: dict[str, Any], n_trials: int) -> dict[str, Any]:
    params = {**spec["params"], "epochs": 2, "iters_per_epoch": 20, "eval_samples": 500}
    return {**spec, "params": params, "budget": {**spec["budget"], "n_trials": n_trials}}


@pytest.mark.one_database
def test_the_shipped_warm_start_example_follows_the_ring8_study(service: Service) -> None:
    """search_spaces/gan2d_ring8_warm.yaml as its comment says: after gan2d_ring8.yaml."""
    ring8 = yaml.safe_load((SEARCH_SPACES / "gan2d_ring8.yaml").read_text())
    source = _submit(service, {**_shortened(ring8, 5), "pruner": {"type": "none"}})
    assert service.wait_for_study(source, ("completed", "failed"), 300)["state"] == "completed"

    warm = yaml.safe_load((SEARCH_SPACES / "gan2d_ring8_warm.yaml").read_text())
    warm["warm_start"]["from_study"] = source
    study_id = _submit(service, _shortened(warm, 6))
    assert service.wait_for_study(study_id, ("completed", "failed"), 300)["state"] == "completed"
    direction = ring8["objective"]["direction"]
    best_first = sorted(
        (t for t in _trials(service, source) if t["state"] == "completed"),
        key=lambda t: (-t["value"] if direction == "maximize" else t["value"], t["number"]),
    )[:4]
    trials = _trials(service, study_id)
    assert [t["origin"] for t in trials] == [
        "points_to_evaluate[0]",
        *(f"warm start: study {source} trial {t['id']}" for t in best_first),
        None,
    ]
    assert trials[0]["params"] == warm["points_to_evaluate"][0]
    space = warm["search_space"]
    for rerun, earlier in zip(trials[1:5], best_first, strict=True):
        for name, value in rerun["params"].items():
            inside = (
                value in space[name]["choices"]
                if space[name]["type"] == "categorical"
                else space[name]["low"] <= value <= space[name]["high"]
            )
            assert inside, (name, value)
            if name in earlier["params"] and _fits(space[name], earlier["params"][name]):
                assert value == earlier["params"][name], "a value that fits is taken as is"


def _fits(dist: dict[str, Any], value: Any) -> bool:
    if dist["type"] == "categorical":
        return value in dist["choices"]
    return bool(dist["low"] <= value <= dist["high"])
