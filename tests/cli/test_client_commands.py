"""The ``gentune`` client commands against the real API served by uvicorn on a real database:
studies are submitted through the CLI or REST, and trials are written through the same
repository calls the worker's recorder makes."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from gentune.service.artifacts import ArtifactStore, artifact_path
from gentune.service.cli import app
from gentune.service.db.models import PruneRecord, StudyState, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import session_scope
from tests.support.records import add_trial, finish_study, start_study
from tests.support.servers import REPO_ROOT, ApiServer, api_server, free_port
from tests.support.specs import BAD_DEFINITION, ring_spec


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server for the module's tests (each makes studies of its own)."""
    with api_server(database_url, tmp_path_factory.mktemp("artifacts")) as served:
        yield served


def gentune(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def in_background(*steps: tuple[float, Callable[[], object]]) -> Callable[[], None]:
    """Run each (delay, action) in turn on a thread; the returned join re-raises its error."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for delay, action in steps:
                time.sleep(delay)
                action()
        except BaseException as exc:  # handed to the test by join()
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(timeout=30)
        assert not thread.is_alive()
        if errors:
            raise errors[0]

    return join


def table_rows(output: str) -> list[list[str]]:
    """The cells of a rich table's body rows (those whose first cell is a number)."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line)[1:-1]]
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


# --- submit -------------------------------------------------------------------------------


def test_submit_prints_the_study_id_and_its_page(server: ApiServer, tmp_path: Path) -> None:
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(ring_spec(name="cli-submitted")))
    result = gentune("submit", str(file), "--url", server.url)
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"study (\d+) \(cli-submitted\) queued: (\S+)\n", result.stdout)
    assert match, result.stdout
    study = server.api("GET", f"/studies/{match[1]}").json()
    assert study["name"] == "cli-submitted" and study["state"] == "queued"
    assert match[2] == study["page_url"] == f"{server.url}/studies/{match[1]}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BAD_DEFINITION, [(9, "search_space.lr_g.high"), (14, "budget.n_trials")]),
        ("name: broken\nsearch_space: [unclosed\n", [(3, "body")]),
    ],
    ids=["invalid-fields", "yaml-syntax"],
)
def test_submit_of_a_bad_file_names_file_line_and_field_in_the_apis_words(
    server: ApiServer, tmp_path: Path, text: str, expected: list[tuple[int, str]]
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    result = gentune("submit", str(file), "--url", server.url)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    refused = server.api(
        "POST", "/studies/yaml", content=text, headers={"Content-Type": "application/yaml"}
    )
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 422: the service refused it:"
    assert lines[1:] == [f"{file}:{e['line']}: {e['field']}: {e['message']}" for e in errors]
    for line, field in expected:
        assert any(e["line"] == line and e["field"].startswith(field) for e in errors), errors


def test_a_token_comes_from_the_option_or_the_environment(
    server: ApiServer, tmp_path: Path
) -> None:
    guarded = ApiServer(server.settings.model_copy(update={"api_token": SecretStr("s3cret")}))
    guarded.start()
    try:
        file = tmp_path / "study.yaml"
        file.write_text(yaml.safe_dump(ring_spec(name="cli-guarded")))
        refused = gentune("submit", str(file), "--url", guarded.url)
        assert refused.exit_code == 1
        words = guarded.api(
            "POST",
            "/studies/yaml",
            content=file.read_text(),
            headers={"Content-Type": "application/yaml"},
        ).json()["detail"]
        assert refused.stderr == f"error: 401: {words}\n"

        env = {"GENTUNE_URL": guarded.url, "GENTUNE_API_TOKEN": "s3cret"}
        accepted = gentune("submit", str(file), env=env)
        assert accepted.exit_code == 0, accepted.output
        study_id = re.match(r"study (\d+)", accepted.stdout)[1]  # type: ignore[index]
        cancelled = gentune("cancel", study_id, "--url", guarded.url, "--token", "s3cret")
        assert cancelled.exit_code == 0, cancelled.output
    finally:
        guarded.stop()


# --- studies and cancel ---------------------------------------------------------------------


def test_studies_lists_the_newest_first_in_full_rows_and_filters_by_state(
    server: ApiServer,
) -> None:
    settings = server.settings
    long_name = "a-study-name-long-enough-to-wrap-an-eighty-column-table-" + uuid.uuid4().hex[:6]
    done = server.new_study(name=long_name)
    start_study(settings, done["id"])
    add_trial(settings, done["id"], 0, [0.5], TrialState.completed, origin="defaults")
    add_trial(
        settings,
        done["id"],
        1,
        [0.1],
        TrialState.pruned,
        "slow",
        PruneRecord("pruner/median", 1, {}),
    )
    add_trial(settings, done["id"], 2, [0.4, 0.8125], TrialState.completed)
    finish_study(settings, done["id"], StudyState.completed)
    cancelled = server.new_study()
    assert gentune("cancel", str(cancelled["id"]), "--url", server.url).exit_code == 0
    queued = server.new_study()

    result = gentune("studies", "--url", server.url, "--limit", "3")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert [int(r[0]) for r in rows] == [queued["id"], cancelled["id"], done["id"]]
    assert rows[2][1:5] == [long_name, "gan2d", "completed", "3/4 (1 pruned)"]
    assert rows[2][5:8] == ["max mode_score", "0.8125", "+62%"]  # over the defaults' 0.5
    assert re.fullmatch(r"\d+s", rows[2][8]), rows[2]
    assert rows[1][3:5] == ["cancelled", "0/4"] and rows[1][6:] == ["", "", ""]
    assert rows[0][3] == "queued"

    only = gentune("studies", "--url", server.url, "--state", "cancelled", "--limit", "500")
    assert only.exit_code == 0, only.output
    ids = [int(r[0]) for r in table_rows(only.stdout)]
    assert cancelled["id"] in ids and queued["id"] not in ids and done["id"] not in ids
    assert {r[3] for r in table_rows(only.stdout)} == {"cancelled"}

    wrong = gentune("studies", "--url", server.url, "--state", "paused")
    assert wrong.exit_code == 2 and "paused" in wrong.output


def test_cancel_says_what_happened_and_the_apis_refusal(server: ApiServer) -> None:
    settings = server.settings
    queued = server.new_study()
    result = gentune("cancel", str(queued["id"]), "--url", server.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"study {queued['id']} ({queued['name']}) cancelled (cancelled before it started)\n"
    )
    again = gentune("cancel", str(queued["id"]), "--url", server.url)
    assert again.exit_code == 1
    words = server.api("POST", f"/studies/{queued['id']}/cancel").json()["detail"]
    assert again.stderr == f"error: 409: {words}\n"

    running = server.new_study()
    start_study(settings, running["id"])
    flagged = gentune("cancel", str(running["id"]), "--url", server.url)
    assert flagged.exit_code == 0, flagged.output
    assert "running, cancel requested" in flagged.stdout
    assert server.api("GET", f"/studies/{running['id']}").json()["cancel_requested"] is True


# --- watch ----------------------------------------------------------------------------------


def test_watch_follows_a_study_to_its_end_then_shows_its_top_trials(server: ApiServer) -> None:
    settings = server.settings
    study = server.new_study(budget={"n_trials": 5, "max_concurrent": 2})
    study_id = study["id"]
    start_study(settings, study_id)
    ids: list[int] = []
    divergence = PruneRecord("stability/divergence", 1, {"g_loss": 1e6})

    def trial(
        number: int, values: list[float], state: TrialState, **how: Any
    ) -> Callable[[], None]:
        return lambda: ids.append(add_trial(settings, study_id, number, values, state, **how))

    join = in_background(
        (0.4, trial(0, [0.3, 0.5], TrialState.completed, origin="defaults")),
        (0.2, trial(1, [0.2], TrialState.pruned, reason="g_loss diverged", prune=divergence)),
        (0.0, trial(2, [0.4, 0.9], TrialState.completed)),
        (0.2, trial(3, [0.7], TrialState.completed)),
        (0.0, trial(4, [0.1], TrialState.failed, reason="CUDA out of memory")),
        (0.2, lambda: finish_study(settings, study_id, StudyState.completed)),
    )
    started = time.monotonic()
    result = gentune("watch", str(study_id), "--url", server.url, "--interval", "0.1", "--top", "4")
    join()
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 10

    lines = result.stdout.splitlines()
    progress = [
        line for line in lines if line.startswith(f"study {study_id} (") and "running:" in line
    ]
    assert progress[0].startswith(f"study {study_id} ({study['name']}) running: 0/5 trials")
    assert len(progress) >= 2 and len(set(progress)) == len(progress), "one line per change"
    finished = [int(n) for n in re.findall(r"running: (\d)/5 trials", "\n".join(progress))]
    assert len(finished) == len(progress) and finished == sorted(finished)

    assert "top 4 of 5 trials by mode_score (maximize)" in result.stdout
    rows = table_rows(result.stdout)
    assert [int(r[0]) for r in rows] == [ids[2], ids[3], ids[0], ids[1]]
    assert [r[2:5] for r in rows] == [
        ["completed", "0.9", "2"],
        ["completed", "0.7", "1"],
        ["completed", "0.5", "2"],
        ["pruned", "0.2", "1"],
    ]
    assert rows[3][5:] == ["stability/divergence", "g_loss diverged"]
    assert lines[-1] == (
        f"study {study_id} ({study['name']}) completed: 5/5 trials finished (3 completed, "
        f"1 pruned, 1 failed); best mode_score 0.9 (trial {ids[2]}, number 2); "
        f"defaults 0.5 (+80%); {server.url}/studies/{study_id}"
    )


def test_watch_of_an_ended_study_returns_at_once_with_its_reason_and_minimized_order(
    server: ApiServer,
) -> None:
    settings = server.settings
    study = server.new_study(objective={"metric": "frechet", "direction": "minimize"})
    study_id = study["id"]
    start_study(settings, study_id)
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        for number, value in enumerate([0.3, 0.1, 0.2]):
            trial = repo.create_trial(study_id, number, {}, None)
            repo.record_progress(trial.id, 1, {"frechet": value}, value, 1, {})
            repo.finish_trial(trial.id, TrialState.completed)
        lost = repo.create_trial(study_id, 3, {}, None)  # lost with its worker, no value
        repo.start_trial(lost.id)
    finish_study(settings, study_id, StudyState.failed, "worker lost and no retries left")

    result = gentune("watch", str(study_id), "--url", server.url)
    assert result.exit_code == 0, result.output
    assert "running:" not in result.stdout
    assert [r[1:4] for r in table_rows(result.stdout)] == [
        ["1", "completed", "0.1"],
        ["2", "completed", "0.2"],
        ["0", "completed", "0.3"],
        ["3", "running", ""],
    ]
    assert result.stdout.splitlines()[-1].startswith(
        f"study {study_id} ({study['name']}) failed (worker lost and no retries left): "
        "3/4 trials finished (3 completed, 0 pruned, 0 failed), 1 running; best frechet 0.1"
    )


def test_watch_of_a_missing_study_prints_the_apis_words(server: ApiServer) -> None:
    result = gentune("watch", "987654", "--url", server.url)
    assert result.exit_code == 1
    words = server.api("GET", "/studies/987654").json()["detail"]
    assert words == "Study 987654 does not exist."
    assert result.stderr == f"error: 404: {words}\n"


def test_watch_rides_out_a_service_restart(server: ApiServer) -> None:
    restarting = ApiServer(server.settings)
    restarting.start()
    try:
        study = restarting.new_study()
        start_study(restarting.settings, study["id"])
        join = in_background(
            (0.2, restarting.stop),
            (0.5, restarting.start),
            (
                0.1,
                lambda: finish_study(
                    restarting.settings, study["id"], StudyState.cancelled, "cancelled"
                ),
            ),
        )
        result = gentune("watch", str(study["id"]), "--url", restarting.url, "--interval", "0.1")
        join()
    finally:
        restarting.stop()
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1].startswith(
        f"study {study['id']} ({study['name']}) cancelled (cancelled): 0/4 trials finished"
    )


def test_watch_gives_up_on_a_service_gone_for_longer_than_its_patience() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = gentune("watch", "1", "--url", url, "--patience", "0.5", "--interval", "0.1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: lost the gentune service at {url} for 0.5 s: ")
    assert time.monotonic() - started < 5


def test_watch_on_a_terminal_redraws_and_ctrl_c_leaves_the_study_running(server: ApiServer) -> None:
    settings = server.settings
    study = server.new_study()
    start_study(settings, study["id"])
    add_trial(settings, study["id"], 0, [0.25], TrialState.running)
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gentune.service.cli",
            "watch",
            str(study["id"]),
            "--url",
            server.url,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background job (CI runs the suite as one) inherits SIGINT ignored, and Python then
        # keeps it ignored; a person's terminal delivers it. Give the child the terminal's.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        seen = ""
        while "top 1 of 1 trials" not in seen:
            line = process.stdout.readline()
            assert line, f"watch ended before drawing: {process.communicate()}"
            seen += line
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "stopped watching; the study keeps running" in stderr
    assert "Traceback" not in stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen + rest)
    assert f"study {study['id']} ({study['name']}) running\n" in plain
    assert "0/4 trials finished" in plain
    assert "0 completed, 0 pruned, 0 failed, 1 running; no completed trial yet" in plain
    assert re.search(r"│ +\d+ │ +0 │ running +│ +0\.25 │ +1 │", plain), plain
    assert server.api("GET", f"/studies/{study['id']}").json()["state"] == "running"


# --- best -----------------------------------------------------------------------------------


def test_best_prints_the_config_and_downloads_it_with_the_checkpoint(
    server: ApiServer, tmp_path: Path
) -> None:
    settings = server.settings
    study = server.new_study()
    start_study(settings, study["id"])
    trial_id = add_trial(
        settings, study["id"], 0, [0.4, 0.75], TrialState.completed, origin="defaults"
    )
    checkpoint = {"model": {"w": torch.arange(3.0)}, "step": 2, "best_value": 0.75}
    relative = artifact_path(study["id"], trial_id, "best")
    size = ArtifactStore(settings.artifact_dir).save_checkpoint(relative, checkpoint)
    with session_scope(settings.database_url) as session:
        Repository(session).upsert_artifact(trial_id, "best", relative, 2, size)
    finish_study(settings, study["id"], StudyState.completed)

    target = tmp_path / "best"
    result = gentune("best", str(study["id"]), "--url", server.url, "--download", str(target))
    assert result.exit_code == 0, result.output
    printed, saved = result.stdout.rsplit("saved ", 1)
    config = {"dataset": "ring8", "epochs": 3, "iters_per_epoch": 20, "lr_g": 0.01}
    assert yaml.safe_load(printed) == {
        "trial_id": trial_id,
        "value": 0.75,
        "step": 2,
        "config": config,
        "baseline": {
            "trial_id": trial_id,
            "state": "completed",
            "value": 0.75,
            "improvement": 0.0,
            "summary": "best 0.75 is the defaults' own: no config beat them yet",
        },
    }
    assert saved == f"{target / 'config.yaml'} and {target / 'checkpoint.pt'} (step 2)\n"
    assert yaml.safe_load((target / "config.yaml").read_text()) == config
    loaded = torch.load(io.BytesIO((target / "checkpoint.pt").read_bytes()), weights_only=False)
    assert loaded["step"] == 2 and torch.equal(loaded["model"]["w"], torch.arange(3.0))


class _RunsCode:
    """Pickles to a call that writes ``marker``: what a hostile checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


def test_sample_refuses_a_checkpoint_that_would_run_code_and_runs_none(
    server: ApiServer, tmp_path: Path
) -> None:
    """Whoever controls the server or its store must not run code on the user's machine
    through ``gentune sample``: the checkpoint is read with torch's weights-only unpickler."""
    settings = server.settings
    study = server.new_study()
    start_study(settings, study["id"])
    trial_id = add_trial(settings, study["id"], 0, [0.5], TrialState.completed)
    marker = tmp_path / "pwned"
    hostile = {"generator": {"w": torch.zeros(2)}, "step": 1, "extra": _RunsCode(marker)}
    relative = artifact_path(study["id"], trial_id, "best")
    store = ArtifactStore(settings.artifact_dir)
    size = store.save_checkpoint(relative, hostile)
    with session_scope(settings.database_url) as session:
        Repository(session).upsert_artifact(trial_id, "best", relative, 1, size)

    result = gentune("sample", str(trial_id), "--url", server.url, "--out", str(tmp_path / "s"))
    assert result.exit_code == 1, result.output
    assert not marker.exists(), "loading the checkpoint ran code from it"
    words = " ".join(result.stderr.split())
    assert f"trial {trial_id}'s best checkpoint was not loaded" in words
    assert "without running code" in words and "checkpoint_globals" in words
    assert not (tmp_path / "s").exists()
    # The store's own reader refuses it the same way.
    with pytest.raises(ValueError, match="without running code"):
        store.load_checkpoint(relative)
    assert not marker.exists()


def test_rate_scores_and_picks_and_the_tallies_follow(server: ApiServer) -> None:
    settings = server.settings
    study = server.new_study()
    a = add_trial(settings, study["id"], 0, [0.4], TrialState.completed)
    b = add_trial(settings, study["id"], 1, [0.5], TrialState.completed)
    c = add_trial(settings, study["id"], 2, [0.3], TrialState.completed)
    elsewhere = add_trial(settings, server.new_study()["id"], 0, [0.1], TrialState.completed)

    first = gentune("rate", str(a), "--url", server.url, "--score", "4")
    assert first.exit_code == 0, first.output
    assert f"trial {a}: score 4 by anonymous; now 4.00 from 1 score(s)" in first.stdout
    second = gentune("rate", str(a), "--url", server.url, "--score", "2")
    assert "now 3.00 from 2 score(s)" in second.stdout, second.output
    pick = gentune("rate", str(b), "--url", server.url, "--better-than", str(a))
    assert f"better than trial {a} by anonymous" in pick.stdout and "1 win(s)" in pick.stdout
    assert gentune("rate", str(c), "--url", server.url, "--score", "5").exit_code == 0

    refused = {
        "give either score (1-5) or better_than": [str(a)],
        "a trial is not compared with itself": [str(a), "--better-than", str(a)],
        "picks compare trials of one study": [str(a), "--better-than", str(elsewhere)],
        "there is no trial 999999": [str(a), "--better-than", "999999"],
    }
    for words, args in refused.items():
        result = gentune("rate", *args, "--url", server.url)
        assert result.exit_code == 1 and words in result.stderr, (words, result.output)
    assert gentune("rate", str(a), "--url", server.url, "--score", "6").exit_code == 2

    api = f"{server.url}/api/v1"
    trial_a = httpx.get(f"{api}/trials/{a}").json()
    assert (trial_a["rating_mean"], trial_a["rating_count"], trial_a["losses"]) == (3.0, 2, 1)
    listed = httpx.get(f"{api}/trials/{a}/ratings").json()
    assert listed["count"] == 3 and {r["rater"] for r in listed["data"]} == {"anonymous"}
    ranked = httpx.get(
        f"{api}/studies/{study['id']}/trials", params={"sort": "rating", "order": "desc"}
    ).json()["data"]
    assert [t["id"] for t in ranked] == [c, a, b], "by mean score; never scored last"
    record = httpx.get(f"{api}/studies/{study['id']}/export").json()
    given = {
        t["id"]: [(r["score"], r["better_than"]) for r in t["ratings"]] for t in record["trials"]
    }
    assert given == {a: [(4, None), (2, None)], b: [(None, a)], c: [(5, None)]}
    trials_csv = httpx.get(
        f"{api}/studies/{study['id']}/export", params={"format": "trials.csv"}
    ).text
    row_a = next(line for line in trials_csv.splitlines() if line.startswith(f"{a},"))
    assert ",3.0,2,0,1," in row_a, row_a


def test_raters_at_once_lose_no_score_and_no_pick(server: ApiServer) -> None:
    """Ratings sent at the same moment by many people: every score counts in the trial's mean
    and count, every pick in its wins and the other's losses (the tallies are counted in the
    database, not read, changed and written back)."""
    settings = server.settings
    study = server.new_study()
    a = add_trial(settings, study["id"], 0, [0.4], TrialState.completed)
    b = add_trial(settings, study["id"], 1, [0.5], TrialState.completed)
    api = f"{server.url}/api/v1"
    bodies = [{"score": 1 + i % 5} for i in range(24)] + [{"better_than": b}] * 24
    barrier = threading.Barrier(8)
    answers: list[int] = []
    lock = threading.Lock()

    def rater(mine: list[dict[str, int]]) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            for body in mine:
                code = client.post(f"{api}/trials/{a}/ratings", json=body).status_code
                with lock:
                    answers.append(code)

    threads = [threading.Thread(target=rater, args=(bodies[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers.count(201) == len(bodies), Counter(answers)
    trial_a = httpx.get(f"{api}/trials/{a}").json()
    trial_b = httpx.get(f"{api}/trials/{b}").json()
    scores = [body["score"] for body in bodies if "score" in body]
    assert trial_a["rating_count"] == len(scores)
    assert trial_a["rating_mean"] == pytest.approx(sum(scores) / len(scores))
    assert (trial_a["wins"], trial_b["losses"]) == (24, 24)


def test_best_of_a_multi_objective_study_prints_its_pareto_set(server: ApiServer) -> None:
    settings = server.settings
    study = server.new_study(
        objectives=[
            {"metric": "mode_score", "direction": "maximize"},
            {"metric": "params_millions", "direction": "minimize"},
        ],
        sampler={"type": "nsga2", "seed": 0},
    )
    points = {0: [0.9, 0.03], 1: [0.5, 0.01], 2: [0.4, 0.02]}  # 2 is beaten by 1
    ids = {}
    with session_scope(settings.database_url) as session:
        repo = Repository(session)
        for number, (score, size) in points.items():
            trial = repo.create_trial(study["id"], number, {"lr_g": 0.001 * (number + 1)}, None)
            metrics = {"mode_score": score, "params_millions": size}
            repo.record_progress(trial.id, 1, metrics, score, 1, {}, values=[score, size])
            repo.finish_trial(trial.id, TrialState.completed)
            ids[number] = trial.id
        session.commit()
    result = gentune("best", str(study["id"]), "--url", server.url)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["trial_id"] == ids[0] and shown["value"] == 0.9
    assert [p["trial_id"] for p in shown["pareto"]] == [ids[0], ids[1]]
    assert shown["pareto"][1] == {
        "trial_id": ids[1],
        "mode_score": 0.5,
        "params_millions": 0.01,
        "params": {"lr_g": 0.002},
    }


def test_status_says_how_many_trials_wait_for_resources_and_an_older_server_still_reads() -> None:
    from gentune.service.cli.render import status_line

    study = {
        "id": 7,
        "name": "waits",
        "state": "running",
        "state_reason": None,
        "n_trials": 8,
        "objective": {"metric": "fid"},
        "best": None,
        "trial_counts": {"pending": 2, "running": 1, "completed": 3, "pruned": 0, "failed": 0},
    }
    assert status_line(study) == (
        "study 7 waits: running; trials 3 completed, 0 pruned, 0 failed, 1 running, 2 pending of 8"
    )
    older = {**study, "trial_counts": {"running": 1, "completed": 3, "pruned": 0, "failed": 0}}
    assert status_line(older).endswith("0 failed, 1 running of 8")
