"""gentune reproduce and gentune export against the real service and its database."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.servers import Service

pytestmark = pytest.mark.slow

RING = {
    "name": "repro-ring",
    "trainer": "gan2d",
    "params": {"dataset": "ring8", "epochs": 3, "iters_per_epoch": 30, "eval_samples": 500},
    "search_space": {"lr_g": {"type": "float", "low": 5e-4, "high": 3e-3, "log": True}},
    "objective": {"metric": "mode_score", "direction": "maximize"},
    "sampler": {"type": "random", "seed": 2},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 2, "max_concurrent": 2},
}
DIGITS = {
    "name": "repro-vae",
    "trainer": "vae",
    "params": {"dataset": "digits", "epochs": 2, "eval_samples": 200},
    "search_space": {"lr": {"type": "float", "low": 5e-4, "high": 3e-3, "log": True}},
    "objective": {"metric": "fid", "direction": "minimize"},
    "sampler": {"type": "random", "seed": 2},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 1, "max_concurrent": 1},
}


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gentune.service.cli", *args, "--url", service.url],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(service: Service, spec: dict[str, Any]) -> list[dict[str, Any]]:
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    study = service.wait_for_study(study_id, ("completed", "failed"), 300)
    assert study["state"] == "completed", service.log_tail()
    trials: list[dict[str, Any]] = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    return trials


@pytest.fixture(scope="module")
def ring_trials(service: Service) -> list[dict[str, Any]]:
    """One small gan2d study the tests below share (each uses its own trial or only reads)."""
    return sorted(_run(service, RING), key=lambda t: t["number"])


@pytest.mark.one_database  # runs the trainer here; what it reads, the tests below read too
@pytest.mark.parametrize("which", ["gan2d", "vae-digits"])
def test_a_finished_trial_reproduces_on_cpu(
    service: Service, ring_trials: list[dict[str, Any]], which: str
) -> None:
    trial = ring_trials[0] if which == "gan2d" else _run(service, DIGITS)[0]
    spec = RING if which == "gan2d" else DIGITS
    manifest = service.api("GET", f"/trials/{trial['id']}/manifest").json()
    assert manifest["seed"] == 0 and manifest["config"]["seed"] == 0
    assert {"torch", "code", "device", "torch_threads"} <= set(manifest["run_info"])

    done = _cli(service, "reproduce", str(trial["id"]), "--tolerance", "1e-6")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trial {trial['id']} reproduced" in done.stdout, done.stdout
    print(f"\n{spec['trainer']}: {done.stdout.strip().splitlines()[-1]}")


def test_a_changed_record_is_caught(service: Service, ring_trials: list[dict[str, Any]]) -> None:
    """The comparison can fail: one stored value nudged by 1% is reported, exit 1."""
    trial = ring_trials[1]
    engine = create_engine(service.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE gentune_metrics SET value = value * 1.01 + 0.01 "
                "WHERE trial_id = :trial AND name = 'frechet' AND step = 2"
            ),
            {"trial": trial["id"]},
        )
    engine.dispose()
    done = _cli(service, "reproduce", str(trial["id"]))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did not reproduce" in done.stderr and "frechet" in done.stderr, done.stderr


def test_export_writes_the_whole_record(
    service: Service, ring_trials: list[dict[str, Any]], tmp_path: Path
) -> None:
    trials = ring_trials
    study_id = trials[0]["study_id"]
    done = _cli(service, "export", str(study_id), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr

    record = json.loads((tmp_path / f"study-{study_id}.json").read_text())
    assert record["format"] == "gentune-export/1"
    assert record["study"]["definition"]["name"] == "repro-ring"
    assert sorted(t["id"] for t in record["trials"]) == sorted(t["id"] for t in trials)
    points = 0
    for trial in record["trials"]:
        detail = service.api("GET", f"/trials/{trial['id']}").json()
        assert trial["config"] == detail["config"]
        assert trial["metrics"] == {
            name: [[p["step"], p["value"]] for p in series]
            for name, series in detail["metrics"].items()
        }
        points += sum(len(series) for series in trial["metrics"].values())

    with (tmp_path / f"study-{study_id}.trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == sorted(t["number"] for t in trials)
    by_id = {t["id"]: t for t in trials}
    for row in rows:
        trial = by_id[int(row["trial_id"])]
        assert float(row["param.lr_g"]) == pytest.approx(trial["params"]["lr_g"])
        assert float(row["value"]) == pytest.approx(trial["value"])
        assert row["state"] == "completed"
    with (tmp_path / f"study-{study_id}.metrics.csv").open() as handle:
        metric_rows = list(csv.DictReader(handle))
    assert len(metric_rows) == points
    assert set(metric_rows[0]) == {"trial_id", "number", "step", "metric", "value"}


@pytest.mark.one_database  # its database side is one artifact lookup, covered on both
def test_a_study_fine_tunes_an_earlier_trials_checkpoint(
    service: Service, ring_trials: list[dict[str, Any]]
) -> None:
    """init_from: the fine-tuned trial starts where the earlier one's best checkpoint was.
    With learning rates near 0 its first evaluation scores what that checkpoint scored."""
    source = ring_trials[0]
    detail = service.api("GET", f"/trials/{source['id']}").json()
    best = next(c for c in detail["checkpoints"] if c["kind"] == "best")
    frechet = {p["step"]: p["value"] for p in detail["metrics"]["frechet"]}[best["step"]]
    spec = {
        "name": "fine-tune",
        "trainer": "gan2d",
        "params": {
            **RING["params"],
            "epochs": 1,
            "lr_d": 1e-7,
            "init_from": {"trial": source["id"], "checkpoint": "/etc/passwd"},
        },
        "search_space": {"lr_g": {"type": "float", "low": 1e-7, "high": 2e-7}},
        "objective": RING["objective"],
        "pruner": {"type": "none"},
        "budget": {"n_trials": 1},
    }
    refusals = {
        "params.hidden": {**spec, "params": {**spec["params"], "hidden": 64}},
        "search_space.z_dim": {
            **spec,
            "search_space": {"z_dim": {"type": "int", "low": 2, "high": 8}},
        },
        "params.init_from.trial": {
            **spec,
            "params": {**spec["params"], "init_from": {"trial": 999_999}},
        },
    }
    for field, bad in refusals.items():
        refused = service.api("POST", "/studies", json=bad)
        assert refused.status_code == 422, refused.text
        assert field in {e["field"] for e in refused.json()["errors"]}, refused.text

    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    stored = created.json()["definition"]["params"]["init_from"]
    assert stored["checkpoint"] == f"studies/{source['study_id']}/trials/{source['id']}/" + (
        f"checkpoint-{best['step']}.pt"
    ), "the service names the file; a given path is never used"
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), 120)
    assert study["state"] == "completed", service.log_tail()
    tuned = service.api("GET", f"/studies/{study['id']}/trials").json()["data"][0]
    tuned_frechet = service.api("GET", f"/trials/{tuned['id']}").json()["metrics"]["frechet"]
    assert tuned_frechet[0]["value"] == pytest.approx(frechet, rel=0.05), (tuned_frechet, frechet)

    again = _cli(service, "reproduce", str(tuned["id"]), "--tolerance", "1e-6")
    assert again.returncode == 0, again.stdout + again.stderr
