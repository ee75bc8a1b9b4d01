"""Whole studies through the real service: REST submit, Ray Tune trials, Optuna pruning,
results in the database, best config and checkpoint out."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState as OptunaTrialState
from PIL import Image

from gentune.trainers.data import digits, ring8
from gentune.trainers.grids import save_images
from gentune.trainers.metrics import mode_metrics
from tests.support.servers import Service
from tests.support.specs import UNSTABLE_RING_STUDY, quadratic_spec

pytestmark = pytest.mark.slow

RING8_FILE = Path(__file__).resolve().parents[2] / "search_spaces" / "gan2d_ring8.yaml"


@dataclass
class Ring8Run:
    """The shipped ring8 study, run once through the README's flow, as the API reports it."""

    service: Service
    definition: dict[str, Any]
    study: dict[str, Any]
    trials: list[dict[str, Any]]
    best: dict[str, Any]

    @property
    def n_trials(self) -> int:
        return int(self.definition["budget"]["n_trials"])

    def gentune(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gentune.service.cli", *args, "--url", self.service.url],
            capture_output=True,
            text=True,
            env=self.service.env,
            timeout=120,
        )


@pytest.fixture(scope="module")
def ring8_study(service: Service) -> Ring8Run:
    """POST search_spaces/gan2d_ring8.yaml as JSON, as shipped, and wait for its 20 trials:
    TPE finds the ring and the median pruner, after its 5 startup trials, stops some."""
    definition = yaml.safe_load(RING8_FILE.read_text())
    created = service.api("POST", "/studies", json=definition)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    study = service.wait_for_study(study_id, ("completed", "failed"), timeout=900)
    assert study["state"] == "completed", (study, service.log_tail())
    trials = service.api("GET", f"/studies/{study_id}/trials", params={"limit": 100}).json()
    best = service.api("GET", f"/studies/{study_id}/best").json()
    return Ring8Run(service, definition, study, trials["data"], best)


# Minutes of training; what it stores, shorter tests cover on Postgres.
@pytest.mark.one_database
def test_ring8_study_ends_with_every_trial_finished_and_some_pruned(ring8_study: Ring8Run) -> None:
    counts = ring8_study.study["trial_counts"]
    assert counts == {**counts, "pending": 0, "running": 0, "failed": 0}, (
        ring8_study.service.log_tail()
    )
    assert counts["completed"] + counts["pruned"] == ring8_study.n_trials == len(ring8_study.trials)
    assert counts["pruned"] > 0, "the median pruner should stop some of its trials"


@pytest.mark.one_database
def test_ring8_pruned_trials_say_what_stopped_them_and_optuna_agrees(ring8_study: Ring8Run) -> None:
    for trial in ring8_study.trials:
        if trial["state"] == "pruned":
            # The median pruner stops the slow; a config that starts collapsed onto a point
            # (lr_d below lr_g does that here) may be stopped by gan2d's mode_collapse rule.
            # dead_objective stops a config still at mode_score 0 once others have done better.
            assert trial["pruned_by"] in (
                "pruner/median",
                "stability/mode_collapse",
                "stability/dead_objective",
            ), trial
            said = trial["pruned_by"].split("/")[1].replace("_", " ")
            assert trial["reason"].startswith(f"{said}") or f"{said} pruner" in trial["reason"]
            assert f"at step {trial['pruned_step']}" in trial["reason"], trial
            assert trial["prune_values"], trial
    # Optuna's own record agrees: pruned trials are PRUNED there, never COMPLETE.
    optuna_study = optuna.load_study(
        study_name=ring8_study.study["optuna_study_name"], storage=ring8_study.service.database_url
    )
    states = {t.user_attrs["gentune_trial_id"]: t.state for t in optuna_study.trials}
    expected = {"completed": OptunaTrialState.COMPLETE, "pruned": OptunaTrialState.PRUNED}
    assert {t["id"]: expected[t["state"]] for t in ring8_study.trials} == states


@pytest.mark.one_database
def test_ring8_first_trial_runs_the_defaults_and_the_best_is_measured_against_them(
    ring8_study: Ring8Run,
) -> None:
    first = next(t for t in ring8_study.trials if t["number"] == 0)
    assert first["origin"] == "defaults"
    # All of gan2d's defaults lie inside this space's ranges.
    assert first["params"] == {"lr_g": 0.001, "lr_d": 0.002, "z_dim": 4, "loss": "bce"}
    baseline = ring8_study.study["baseline"]
    assert baseline["trial_id"] == first["id"] and baseline["adjusted"] == {}
    assert baseline["state"] == "completed" and baseline["value"] == first["value"]
    assert ring8_study.study["best"]["value"] >= baseline["value"]
    assert f"defaults {baseline['value']:.4g}" in baseline["summary"] or (
        baseline["summary"].endswith("is the defaults' own: no config beat them yet")
    )


@pytest.mark.one_database
def test_ring8_trials_keep_every_metric_their_checkpoints_and_some_sample_grids(
    ring8_study: Ring8Run,
) -> None:
    completed = next(t for t in ring8_study.trials if t["state"] == "completed")
    detail = ring8_study.service.api("GET", f"/trials/{completed['id']}").json()
    assert {
        "modes",
        "hq_fraction",
        "mode_kl",
        "mode_score",
        "frechet",
        "g_loss",
        "d_loss",
        "stability/d_accuracy",
        "stability/diversity",
        "grad_norm_g",
        "grad_norm_d",
    } <= set(detail["metrics"])
    assert [p["step"] for p in detail["metrics"]["frechet"]] == list(range(1, 31))
    assert {c["kind"] for c in detail["checkpoints"]} == {"best", "last"}
    # A sample grid came with every evaluation; the trial keeps those of steps at powers of 2
    # and of its last four, on disk and in the database (the last one dropped, step 26, goes
    # from disk at the next save, which never comes).
    kept = {1, 2, 4, 8, 16, 27, 28, 29, 30}
    listed = ring8_study.service.api("GET", f"/trials/{completed['id']}/artifacts").json()["data"]
    assert {a["kind"] for a in listed if a["kind"].startswith("samples-")} == {
        f"samples-{s}" for s in kept
    }
    study_dir = ring8_study.service.artifact_dir / "studies" / str(ring8_study.study["id"])
    folder = study_dir / "trials" / str(completed["id"])
    on_disk = {int(f.stem.split("-")[1]) for f in folder.glob("samples-*.png")}
    assert kept <= on_disk <= kept | {26}, on_disk


@pytest.mark.one_database
def test_ring8_best_config_covers_the_ring_and_its_checkpoint_says_so(
    ring8_study: Ring8Run,
) -> None:
    best = ring8_study.best
    completed = [t["value"] for t in ring8_study.trials if t["state"] == "completed"]
    assert best["value"] == max(completed)
    assert best["metrics"]["modes"] == 8
    assert best["metrics"]["hq_fraction"] >= 0.8
    assert best["config"]["dataset"] == "ring8"
    assert set(ring8_study.definition["search_space"]) <= set(best["config"])
    blob = ring8_study.service.api("GET", f"/trials/{best['trial_id']}/checkpoint")
    assert blob.status_code == 200
    checkpoint = torch.load(io.BytesIO(blob.content), weights_only=True)
    assert checkpoint["step"] == best["step"]
    assert checkpoint["metrics"]["mode_score"] == pytest.approx(best["value"])


@pytest.mark.one_database
def test_gentune_sample_draws_from_the_ring8_best_what_covers_the_ring(
    ring8_study: Ring8Run, tmp_path: Path
) -> None:
    out = tmp_path / "samples.npy"
    cli = ring8_study.gentune(
        "sample", str(ring8_study.best["trial_id"]), "-n", "5000", "--out", str(out)
    )
    assert cli.returncode == 0, cli.stderr
    samples = np.load(out)
    assert samples.shape == (5000, 2)
    scores = mode_metrics(torch.from_numpy(samples), ring8().means, ring8().std)
    assert scores.modes == 8 and scores.hq_fraction >= 0.8, scores


@pytest.mark.one_database
def test_gentune_watch_and_best_download_on_the_ended_ring8_study(
    ring8_study: Ring8Run, tmp_path: Path
) -> None:
    """`gentune watch` on an ended study returns at once with its top trials and a summary;
    `gentune best --download` saves the best config and the checkpoint the API serves."""
    study, best, n = ring8_study.study, ring8_study.best, ring8_study.n_trials
    watched = ring8_study.gentune("watch", str(study["id"]), "--interval", "1")
    target = tmp_path / "best"
    downloaded = ring8_study.gentune("best", str(study["id"]), "--download", str(target))
    assert watched.returncode == 0, watched.stderr
    assert f"top 10 of {n} trials by mode_score (maximize)" in watched.stdout
    assert watched.stdout.splitlines()[-1].startswith(
        f"study {study['id']} ({study['name']}) completed: {n}/{n} trials finished"
    ), watched.stdout
    assert f"best mode_score {best['value']:.4g} (trial {best['trial_id']}," in watched.stdout
    assert f"defaults {study['baseline']['value']:.4g}" in watched.stdout.splitlines()[-1]
    assert downloaded.returncode == 0, downloaded.stderr
    assert yaml.safe_load((target / "config.yaml").read_text()) == best["config"]
    saved = torch.load(target / "checkpoint.pt", weights_only=True)
    assert saved["step"] == best["step"]
    assert saved["metrics"]["mode_score"] == pytest.approx(best["value"])


@pytest.mark.one_database
def test_stock_optuna_tools_open_the_ring8_study(ring8_study: Ring8Run) -> None:
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    listed = subprocess.run(
        [optuna_cli, "studies", "--storage", ring8_study.service.database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert ring8_study.study["optuna_study_name"] in listed.stdout


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_stability_rules_stop_divergent_trials_early_and_say_why(service: Service) -> None:
    """Learning rates of 0.3 blow the ring GAN up in its first epoch; the default rules stop
    such trials with their rule, step and values, and leave the healthy config alone."""
    created = service.api("POST", "/studies", json=UNSTABLE_RING_STUDY)
    assert created.status_code == 201, created.text
    # The stored definition spells out the rules in force: gan2d's defaults.
    rules = created.json()["definition"]["stability"]["rules"]
    assert [r["type"] for r in rules] == [
        "non_finite",
        "dead_objective",
        "divergence",
        "discriminator_collapse",
        "gradient_explosion",
        "mode_collapse",
    ]
    study_id = created.json()["id"]
    study = service.wait_for_study(study_id, ("completed", "failed"), timeout=600)
    assert study["state"] == "completed", (study, service.log_tail())
    trials = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    by_config = {(t["params"]["lr_g"], t["params"]["lr_d"]): t for t in trials}
    assert len(by_config) == 4

    healthy = by_config[(0.001, 0.002)]
    assert healthy["state"] == "completed" and healthy["pruned_by"] is None, healthy
    blown = by_config[(0.3, 0.3)]
    assert blown["state"] == "pruned", blown
    assert blown["pruned_by"].startswith("stability/"), blown
    assert blown["pruned_step"] <= 3 and blown["last_step"] == blown["pruned_step"], blown
    rule = blown["pruned_by"].removeprefix("stability/")
    assert blown["reason"].startswith(f"{rule.replace('_', ' ')} at step {blown['pruned_step']}")
    assert blown["prune_values"], blown
    # The values shown are the ones recorded at that step.
    detail = service.api("GET", f"/trials/{blown['id']}").json()
    for name, value in blown["prune_values"].items():
        if name in detail["metrics"]:
            recorded = {p["step"]: p["value"] for p in detail["metrics"][name]}
            assert recorded[blown["pruned_step"]] == pytest.approx(value)

    # Optuna has every pruned trial as PRUNED, with its last intermediate value for TPE.
    optuna_study = optuna.load_study(
        study_name=study["optuna_study_name"], storage=service.database_url
    )
    for frozen in optuna_study.trials:
        trial = next(t for t in trials if t["id"] == frozen.user_attrs["gentune_trial_id"])
        if trial["state"] == "pruned":
            assert frozen.state == OptunaTrialState.PRUNED
            assert frozen.user_attrs["gentune_pruned_by"] == trial["pruned_by"]
            assert trial["pruned_step"] in frozen.intermediate_values
        else:
            assert frozen.state == OptunaTrialState.COMPLETE

    # The terminal shows the same: what stopped how many trials, and with --why each reason.
    cli = subprocess.run(
        [sys.executable, "-m", "gentune.service.cli", "status", str(study_id), "--why"]
        + ["--url", service.url],
        capture_output=True,
        text=True,
        env=service.env,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "pruned by: " in cli.stdout and blown["pruned_by"] in cli.stdout, cli.stdout
    assert f"trial {blown['id']}: {blown['reason'][:40]}" in cli.stdout, cli.stdout


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_a_trainer_exception_fails_only_its_trial(service: Service) -> None:
    """A plugin trainer found via the gentune.trainers entry point; one config raises."""
    spec = {
        "name": "flaky-plugin",
        "trainer": "quadratic",
        "params": {"epochs": 4},
        "search_space": {
            "fail_at": {"type": "categorical", "choices": [0, 2]},
            "lr": {"type": "float", "low": 0.01, "high": 0.5},
        },
        "objective": {"metric": "loss", "direction": "minimize"},
        "sampler": {"type": "grid"},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 50, "max_concurrent": 2},
    }
    spec["search_space"]["lr"] = {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1}
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), timeout=300)
    assert study["state"] == "completed", study
    trials = service.api("GET", f"/studies/{study['id']}/trials").json()["data"]
    assert len(trials) == 6, "the grid has 2 x 3 points; the budget is capped to it"
    for trial in trials:
        if trial["params"]["fail_at"] == 2:
            assert trial["state"] == "failed"
            assert "quadratic trainer asked to fail at step 2" in trial["reason"]
            assert trial["attempts"] == 1, "a trainer's own error is never retried"
        else:
            assert trial["state"] == "completed"


@pytest.mark.one_database  # what it checks does not involve the database's kind
def test_a_study_asking_for_more_than_any_node_has_fails_with_the_reason(
    service: Service,
) -> None:
    """Ray would keep such trials pending for ever, and the study would hold its worker's
    slot: it fails at once, saying what it asked for and what the cluster has."""
    spec = quadratic_spec("too-big", 2, 1, resources={"cpu": 500})
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), timeout=120)
    assert study["state"] == "failed", study
    assert "each trial asks for 500 CPUs (resources.cpu)" in study["state_reason"], study
    assert "no node of the Ray cluster has more than" in study["state_reason"], study
    assert study["trial_counts"] == {
        "pending": 0,
        "running": 0,
        "completed": 0,
        "pruned": 0,
        "failed": 0,
    }


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_a_trial_waiting_for_resources_is_pending_and_its_time_counts_from_its_start(
    service: Service,
) -> None:
    """Two trials at once, each asking for every CPU of the local Ray: one trains while the
    other waits, shown as pending (not running) until Ray starts it."""
    spec = quadratic_spec("waiting", 2, 2, resources={"cpu": os.cpu_count() or 1, "gpu": 0})
    spec["params"] = {"epochs": 6, "sleep_s": 0.5}
    study_id = service.api("POST", "/studies", json=spec).json()["id"]
    seen: list[dict[str, Any]] = []

    def one_waits() -> bool:
        counts = service.api("GET", f"/studies/{study_id}").json()["trial_counts"]
        trials = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
        states = sorted(t["state"] for t in trials)
        if states == ["pending", "running"] and counts["pending"] == 1:
            seen.extend(trials)
            return True
        return False

    service.wait_for(one_waits, 120, "one trial training while the other waits")
    waiting = next(t for t in seen if t["state"] == "pending")
    assert waiting["started_at"] is None and waiting["last_step"] is None, waiting
    study = service.wait_for_study(study_id, ("completed", "failed"), timeout=120)
    assert study["state"] == "completed", (study, service.log_tail())
    first, second = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    assert first["state"] == second["state"] == "completed"
    later = max(first, second, key=lambda t: _time(t["started_at"]))
    earlier = first if later is second else second
    # It waited for the other to end: its run time starts then, not when it was created.
    assert _time(later["started_at"]) >= _time(earlier["finished_at"]) - 1.0
    assert _time(later["started_at"]) - _time(later["created_at"]) > 2.0


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_a_compute_budget_stops_starting_trials_once_spent(service: Service) -> None:
    """budget.max_evaluations: a trial starts only while one as long as the longest so far
    still fits; one at a time, trials of 4 epochs against a budget of 10 make 2 (a third
    would pass it)."""
    spec = quadratic_spec("compute-budget", 50, 1)
    spec["budget"]["max_evaluations"] = 10
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), timeout=300)
    assert study["state"] == "completed", (study, service.log_tail())
    trials = service.api("GET", f"/studies/{study['id']}/trials").json()["data"]
    assert [t["last_step"] for t in trials] == [4, 4], trials
    assert trials[0]["origin"] == "defaults"


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_cancel_stops_running_trials_promptly(service: Service) -> None:
    spec = {
        "name": "long",
        "trainer": "quadratic",
        "params": {"epochs": 2000, "sleep_s": 0.05},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "budget": {"n_trials": 4, "max_concurrent": 2},
    }
    study_id = service.api("POST", "/studies", json=spec).json()["id"]
    service.wait_for(
        lambda: service.api("GET", f"/studies/{study_id}").json()["trial_counts"]["running"] > 0,
        120,
        "a trial to start",
    )
    assert service.api("POST", f"/studies/{study_id}/cancel").json()["cancel_requested"]
    study = service.wait_for_study(study_id, ("cancelled",), timeout=30)
    assert study["trial_counts"]["running"] == 0
    trials = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    assert trials and all(
        t["state"] == "failed" and t["reason"] == "study cancelled" for t in trials
    )


def test_two_studies_run_at_once(service: Service) -> None:
    spec = {
        "name": "side-by-side",
        "trainer": "quadratic",
        "params": {"epochs": 40, "sleep_s": 0.1},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "budget": {"n_trials": 2, "max_concurrent": 1},
    }
    ids = [service.api("POST", "/studies", json=spec).json()["id"] for _ in range(2)]

    def both_running() -> bool:
        studies = [service.api("GET", f"/studies/{i}").json() for i in ids]
        return all(s["trial_counts"]["running"] == 1 for s in studies)

    service.wait_for(both_running, 120, "both studies to have a trial running")
    for study_id in ids:
        assert service.wait_for_study(study_id, ("completed",), timeout=120)["state"] == "completed"


SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SHORTENED = {"epochs": 2, "eval_samples": 100, "sampling_steps": 4}
"""What CI trims from a shipped image study; its space, sampler and pruner stay as shipped."""


@pytest.mark.one_database
@pytest.mark.parametrize("file", ["dcgan_digits.yaml", "vae_digits.yaml", "ddpm_digits.yaml"])
def test_shipped_image_study_runs_and_its_best_checkpoint_draws_a_grid(
    service: Service, tmp_path: Path, file: str
) -> None:
    definition = yaml.safe_load((SPACES / file).read_text())
    fields = definition["params"]
    definition["params"] = {
        **fields,
        **{k: v for k, v in SHORTENED.items() if k in fields or k == "epochs"},
    }
    definition["budget"] = {"n_trials": 2, "max_concurrent": 2}
    created = service.api("POST", "/studies", json=definition)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), timeout=300)
    assert study["state"] == "completed", service.log_tail()
    assert study["trial_counts"]["completed"] >= 1, study

    best = service.api("GET", f"/studies/{study['id']}/best").json()
    assert best["metrics"]["fid"] == pytest.approx(best["value"])
    listed = service.api("GET", f"/trials/{best['trial_id']}/artifacts").json()
    kinds = {a["kind"]: a for a in listed["data"]}
    assert {"best", "last", "samples-1", "samples-2"} <= set(kinds)
    grid = httpx.get(kinds["samples-2"]["url"], timeout=30)
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    assert grid.content.startswith(b"\x89PNG")
    trial = service.api("GET", f"/trials/{best['trial_id']}").json()
    assert [s["step"] for s in trial["samples"]] == [1, 2]
    assert trial["run_info"]["dataset_fingerprint"] == digits(16).fingerprint
    assert trial["run_info"]["device"].startswith("cpu")
    assert trial["run_info"]["torch"] == torch.__version__
    assert service.api("GET", f"/trials/{best['trial_id']}/artifacts/nope").status_code == 404
    assert service.api("GET", f"/trials/{best['trial_id']}/artifacts/..%2Fx").status_code in (
        404,
        422,
    )

    out = tmp_path / "grid.png"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "gentune.service.cli",
            "sample",
            str(best["trial_id"]),
            "-n",
            "36",
            "--out",
            str(out),
            "--url",
            service.url,
        ],
        capture_output=True,
        text=True,
        env=service.env,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    with Image.open(out) as picture:  # 6 x 6 images of 16 px with 1 px gaps, scaled 4x
        assert picture.size == (4 * (6 * 17 + 1), 4 * (6 * 17 + 1))


@pytest.mark.one_database  # the trial records it checks are the same on Postgres
def test_image_folder_study_reads_the_data_root_in_every_trial(service: Service) -> None:
    """GENTUNE_DATA_DIR is relative here, while Tune runs trials in folders of their own."""
    folder = service.artifact_dir.parent / "data" / "faces"
    save_images(digits(16).train[:40].numpy(), folder)
    spec = {
        "name": "my-images",
        "trainer": "vae",
        "params": {"dataset": "image_folder", "data_dir": "faces", "epochs": 1},
        "search_space": {"eval_samples": {"type": "categorical", "choices": [50]}},
        "objective": {"metric": "fid", "direction": "minimize"},
        "budget": {"n_trials": 1},
    }
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study = service.wait_for_study(created.json()["id"], ("completed", "failed"), timeout=300)
    assert study["state"] == "completed", service.log_tail()
    (trial,) = service.api("GET", f"/studies/{study['id']}/trials").json()["data"]
    assert trial["run_info"]["dataset"] == "folder:faces:16"
    assert trial["run_info"]["features"] == "random" and trial["run_info"]["train_images"] == "36"

    refused = service.api(
        "POST", "/studies", json={**spec, "params": {**spec["params"], "data_dir": "nope"}}
    )
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert error["field"] == "params.data_dir"
    assert str(folder.parent.resolve()) in error["message"]
