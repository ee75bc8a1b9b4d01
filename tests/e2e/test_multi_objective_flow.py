"""A multi-objective, constrained study on the real service: Optuna's NSGA-II over two
objectives, the primary one pruned in its twin study, infeasible trials never the best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from gentune.service.studies.pareto import dominates
from tests.support.servers import Service

pytestmark = pytest.mark.slow

# gan2d's generator holds 0.00066 M parameters at hidden 16, 0.0088 M at 64, 0.034 M at 128
# and 0.13 M at 256. The threshold pruner stops trials above 0.1 M at their first step; the
# constraint makes those under 0.002 M infeasible.
SPEC: dict[str, Any] = {
    "name": "size-vs-modes",
    "trainer": "gan2d",
    "params": {"dataset": "ring8", "epochs": 2, "iters_per_epoch": 20, "eval_samples": 500},
    "search_space": {
        "hidden": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
        "lr_g": {"type": "float", "low": 5e-4, "high": 3e-3, "log": True},
    },
    "objectives": [
        {"metric": "params_millions", "direction": "minimize"},
        {"metric": "mode_score", "direction": "maximize"},
    ],
    "constraints": [{"metric": "params_millions", "min": 0.002}],
    "sampler": {"type": "nsga2", "seed": 0, "population_size": 4},
    "pruner": {"type": "threshold", "upper": 0.1},
    "points_to_evaluate": [{"hidden": 16}, {"hidden": 64}, {"hidden": 256}, {"hidden": 128}],
    "baseline": False,  # the points above come first, numbered from 0
    "budget": {"n_trials": 6, "max_concurrent": 2},
}


def test_two_objectives_with_a_constraint_give_a_feasible_pareto_set(service: Service) -> None:
    created = service.api("POST", "/studies", json=SPEC)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    study = service.wait_for_study(study_id, ("completed", "failed"), 300)
    assert study["state"] == "completed", service.log_tail()
    trials = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    assert len(trials) == 6
    by_number = {t["number"]: t for t in trials}

    big = by_number[2]
    assert big["params"]["hidden"] == 256 and big["state"] == "pruned"
    assert big["pruned_by"] == "pruner/threshold" and "above the upper bound" in big["reason"]
    completed = [t for t in trials if t["state"] == "completed"]
    assert completed
    for trial in completed:
        size, modes = trial["values"]
        assert size == pytest.approx(trial["value"]), "the primary objective is the value"
        assert trial["feasible"] is (size >= 0.002), trial
        assert 0 <= modes <= 1
    assert by_number[0]["feasible"] is False, "hidden 16 is under the constraint's min"

    best = service.api("GET", f"/studies/{study_id}/best").json()
    feasible = [t for t in completed if t["feasible"]]
    assert best["value"] == min(t["value"] for t in feasible)
    assert best["trial_id"] != by_number[0]["id"], "an infeasible trial is never the best"
    pareto = {p["trial_id"]: p for p in best["pareto"]}
    assert pareto and set(pareto) <= {t["id"] for t in feasible}
    directions = [o["direction"] for o in SPEC["objectives"]]
    for trial in feasible:
        beaten = any(dominates(o["values"], trial["values"], directions) for o in feasible)
        assert (trial["id"] in pareto) is not beaten, trial
    for point in pareto.values():
        assert set(point["values"]) == {"params_millions", "mode_score"}

    columns = service.api("GET", f"/studies/{study_id}/columns").json()
    assert [o["metric"] for o in columns["objectives"]] == ["params_millions", "mode_score"]
    assert columns["feasible"][0] is False and len(columns["values"]) == 6

    # Optuna's record: two directions, the constraint on the infeasible trial, the twin
    # study of the primary objective where the pruner judged.
    storage = service.database_url
    main = optuna.load_study(study_name=study["optuna_study_name"], storage=storage)
    assert len(main.directions) == 2
    infeasible = next(t for t in main.trials if t.number == 0)
    assert infeasible.system_attrs["constraints"][0] > 0
    twin = optuna.load_study(study_name=f"{study['optuna_study_name']}-primary", storage=storage)
    assert len(twin.trials) == 6
    assert twin.trials[2].state == optuna.trial.TrialState.PRUNED


@pytest.mark.one_database  # the records it checks, the test above checks on Postgres
def test_the_shipped_fid_vs_speed_study_gives_a_pareto_set(service: Service) -> None:
    path = Path(__file__).resolve().parents[2] / "search_spaces" / "ddpm_digits_fid_vs_speed.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["params"] = {**spec["params"], "epochs": 2, "eval_samples": 200}
    spec["budget"] = {"n_trials": 3, "max_concurrent": 2}
    # One narrow and fast, one wider and slower, one over the size constraint.
    spec["points_to_evaluate"] = [
        {"width": 16, "sampling_steps": 4},
        {"width": 24, "sampling_steps": 30},
        {"width": 32},
    ]
    spec["baseline"] = False  # the three points are the whole (shortened) study
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), 300)
    assert study["state"] == "completed", service.log_tail()
    trials = {
        t["number"]: t for t in service.api("GET", f"/studies/{study['id']}/trials").json()["data"]
    }
    assert trials[2]["feasible"] is False, "width 32: 0.29 M parameters, over the 0.2 M bound"
    fast, slow = trials[0]["values"][1], trials[1]["values"][1]
    assert fast < slow, "4 DDIM steps draw faster than 30"
    best = service.api("GET", f"/studies/{study['id']}/best").json()
    assert best["pareto"] and trials[2]["id"] not in {p["trial_id"] for p in best["pareto"]}
    assert {"fid", "sample_seconds"} == set(best["pareto"][0]["values"])
    assert "class_kl" in best["metrics"] and "params_millions" in best["metrics"]
