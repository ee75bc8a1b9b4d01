"""Under load and abuse: 50 clients poll a study, its trials and single trials for a minute
while the study runs, and a 51st keeps trying what a reviewer would (no token or a forged one,
path traversal, SQL and HTML injection, oversized and pathological bodies, an unregistered
trainer). Every poll must succeed, every probe must get the 4xx it deserves with a readable
error (a client sending wrong tokens is throttled, the others are not), and the study's
results must be those of the same study run without either."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.databases import new_database_url
from tests.support.servers import Service, free_port, service_env, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]

CLIENTS = 50
LOAD_FOR_S = 60.0
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# One trial at a time with a seeded sampler and pruner: the sequence of configs, and so the
# results, depend on nothing but the study's own history. Each trial sleeps between its steps
# so the study lasts the minute of load while leaving the CPU to the API.
STUDY = {
    "name": "under-load",
    "trainer": "quadratic",
    "params": {"epochs": 24, "sleep_s": 0.3},
    "search_space": {
        "lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "start": {"type": "float", "low": -20, "high": 20},
    },
    "objective": {"metric": "loss", "direction": "minimize"},
    "sampler": {"type": "tpe", "seed": 11, "n_startup_trials": 3},
    # Pruned trials still run 21 of 24 steps: nine trials outlast the minute of load.
    "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 20},
    "budget": {"n_trials": 9, "max_concurrent": 1},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with a token that every request, reads included, must carry."""
    home = tmp_path_factory.mktemp("guarded")
    database_url, cleanup = new_database_url(home)
    port = free_port()
    env = service_env(database_url, home / "artifacts")
    env |= {"GENTUNE_API_TOKEN": TOKEN, "GENTUNE_PROTECT_READS": "true"}
    process = start(["serve", "--port", str(port)], env, home / "service.log")
    svc = Service(
        f"http://127.0.0.1:{port}", database_url, home / "artifacts", env, home / "service.log"
    )
    try:
        svc.wait_until_up()
        yield svc
    finally:
        stop(process)
        cleanup()  # type: ignore[operator]


def _api(service: Service, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return service.api(method, path, headers=AUTH, **kwargs)


def _results(service: Service, study_id: int) -> list[dict[str, Any]]:
    """What a study found: per trial its config, outcome and every reported value."""
    trials = _api(service, "GET", f"/studies/{study_id}/trials", params={"limit": 100}).json()[
        "data"
    ]
    results = []
    for trial in sorted(trials, key=lambda t: t["number"]):
        detail = _api(service, "GET", f"/trials/{trial['id']}").json()
        results.append(
            {
                "number": trial["number"],
                "params": trial["params"],
                "state": trial["state"],
                "value": trial["value"],
                "pruned_by": trial["pruned_by"],
                "pruned_step": trial["pruned_step"],
                "losses": [(p["step"], p["value"]) for p in detail["metrics"]["loss"]],
            }
        )
    return results


async def _poll(url: str, study_id: int, until: float, tally: Counter[str]) -> None:
    rng = random.Random()
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=AUTH, timeout=30) as client:
        trial_ids: list[int] = []
        while time.monotonic() < until:
            choice = rng.random()
            if choice < 0.35:
                path = f"/studies/{study_id}"
            elif choice < 0.7 or not trial_ids:
                path = f"/studies/{study_id}/trials"
            else:
                path = f"/trials/{rng.choice(trial_ids)}"
            try:
                answer = await client.get(path)
            except httpx.HTTPError as error:
                tally[f"error {type(error).__name__}"] += 1
                continue
            tally[str(answer.status_code)] += 1
            if path.endswith("/trials") and answer.status_code == 200:
                trial_ids = [t["id"] for t in answer.json()["data"]]


Probe = tuple[str, str, dict[str, Any], set[int], str]
"""(method, path, httpx arguments, the statuses that are right, a phrase the error holds)."""


def _probes(study_id: int, trial_id: int) -> tuple[list[Probe], list[Probe]]:
    """Hostile requests: those sent without the token, and those sent with it."""
    api = "/api/v1"
    spec = {**STUDY, "name": "probe"}
    forged = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    yaml = {"Content-Type": "application/yaml"}
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    billion = {
        "start": {"type": "float", "low": -100, "high": 100, "step": 0.0001},
        "lr": {"type": "float", "low": 0.001, "high": 1, "step": 0.001},
        "fail_at": {"type": "int", "low": 0, "high": 999},
    }
    grid = {**spec, "sampler": {"type": "grid"}, "search_space": billion}
    deep = b"[" * 20_000 + b"]" * 20_000
    pickle = b"a: !!python/object/apply:os.system [id]"
    studies, study, trial = (
        f"{api}/studies",
        f"{api}/studies/{study_id}",
        f"{api}/trials/{trial_id}",
    )
    no_token: list[Probe] = [
        ("POST", studies, {"json": spec}, {401}, "token"),
        ("GET", study, {}, {401}, "token"),
        # Wrong tokens count against the sender's address: after 10 in a minute it gets 429.
        ("GET", trial, {"headers": forged}, {401, 429}, "token"),
        ("GET", "/metrics", {}, {401}, "token"),
        ("GET", "/optuna/api/studies", {}, {401}, "token"),
        ("POST", f"{study}/cancel", {"headers": forged}, {401, 429}, "token"),
        ("POST", f"{study}/cancel", {"cookies": {"gentune_token": TOKEN}}, {403}, "CSRF"),
        (
            "POST",
            f"{api}/session",
            {"json": {"token": TOKEN}, "headers": {"Origin": "https://evil.example"}},
            {403},
            "evil.example",
        ),
    ]
    with_token: list[Probe] = [
        # Paths out of the artifact store and out of the dashboard's files.
        ("GET", f"{trial}/artifacts/..%2F..%2F..%2Fetc%2Fpasswd", {}, {404}, "Nothing is at"),
        ("GET", f"{trial}/artifacts/%2Fetc%2Fpasswd", {}, {404}, "Nothing is at"),
        ("GET", f"{trial}/artifacts/%2e%2e", {}, {404, 422}, ""),
        ("GET", "/assets/..%2F..%2Fconfig.py", {}, {404}, "Nothing is at"),
        ("GET", "/assets/..%5C..%5Capp.py", {}, {404, 422}, "name"),
        # SQL and HTML in names, filters, sort keys and ids.
        ("POST", studies, {"json": {**spec, "name": "x'; DROP TABLE studies; --"}}, {422}, "name"),
        ("POST", studies, {"json": {**spec, "name": "<script>alert(1)</script>"}}, {422}, "name"),
        ("GET", studies, {"params": {"state": "running' OR '1'='1"}}, {422}, "state"),
        ("GET", f"{study}/trials", {"params": {"sort": "value; DROP TABLE trials"}}, {422}, "sort"),
        ("GET", f"{study}%20OR%201=1", {}, {404}, "Nothing is at"),  # ids are whole numbers
        ("GET", f"{api}/trials/99999999999999999999", {}, {422}, "trial_id"),
        # Trainers are looked up in the registry, never imported.
        ("POST", studies, {"json": {**spec, "trainer": "os:system"}}, {422}, "trainer"),
        ("POST", studies, {"json": {**spec, "trainer": "../../etc/passwd"}}, {422}, "trainer"),
        # Oversized and pathological bodies, and sizes past the limits.
        ("POST", studies, {"content": b" " * 2_000_000}, {413}, "GENTUNE_MAX_BODY_BYTES"),
        ("POST", studies, {"json": {**spec, "name": "n" * 10_000}}, {422}, "name"),
        ("POST", studies, {"json": grid}, {422}, "points"),
        ("POST", studies, {"json": {**spec, "budget": {"n_trials": 10**9}}}, {422}, "n_trials"),
        ("POST", studies, {"content": deep}, {422}, "body"),
        ("POST", f"{studies}/yaml", {"content": laughs, "headers": yaml}, {422}, "body"),
        ("POST", f"{studies}/yaml", {"content": pickle, "headers": yaml}, {422}, ""),
        ("GET", studies, {"params": {"limit": 100_000}}, {422}, "limit"),
    ]
    return no_token, with_token


async def _probe(url: str, study_id: int, until: float, tally: Counter[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        trials = await client.get(f"/api/v1/studies/{study_id}/trials", headers=AUTH)
        no_token, with_token = _probes(study_id, trials.json()["data"][0]["id"])
        # The prober is two clients behind the proxy the service trusts (127.0.0.1): the one
        # without the token sends wrong ones and is throttled, which must touch neither the
        # other nor the pollers (each address has its own count).
        guessing = {"X-Forwarded-For": "203.0.113.66"}
        holding = {**AUTH, "X-Forwarded-For": "203.0.113.67"}
        probes = [(p, guessing) for p in no_token] + [(p, holding) for p in with_token]
        while time.monotonic() < until:
            for (method, path, kwargs, right, phrase), token in probes:
                client.cookies.clear()
                arguments = {**kwargs, "headers": {**token, **kwargs.get("headers", {})}}
                if "cookies" in arguments:
                    client.cookies.update(arguments.pop("cookies"))
                answer = await client.request(method, path, **arguments)
                detail = _detail(answer)
                if answer.status_code in right and detail and phrase in detail:
                    tally[str(answer.status_code)] += 1
                else:
                    tally[f"{method} {path[:60]}: {answer.status_code} {answer.text[:160]}"] += 1


def _detail(answer: httpx.Response) -> str:
    """The error's sentence for a person, or '' when the answer has none."""
    try:
        body = answer.json()
    except json.JSONDecodeError:
        return ""
    return body.get("detail", "") if isinstance(body, dict) else ""


async def _load(url: str, study_id: int, seconds: float) -> tuple[Counter[str], Counter[str]]:
    polls: Counter[str] = Counter()
    probes: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(
        _probe(url, study_id, until, probes),
        *(_poll(url, study_id, until, polls) for _ in range(CLIENTS)),
    )
    return polls, probes


def _run(service: Service, name: str, pause: bool = True) -> int:
    """Submit the study; without ``pause`` its trials skip the sleep between steps, which only
    stretches the study over the minute of load and changes no value."""
    params = STUDY["params"] if pause else {**STUDY["params"], "sleep_s": 0.0}
    answer = _api(service, "POST", "/studies", json={**STUDY, "name": name, "params": params})
    assert answer.status_code == 201, answer.text
    study_id: int = answer.json()["id"]
    return study_id


def _study(service: Service, study_id: int) -> dict[str, Any]:
    study: dict[str, Any] = _api(service, "GET", f"/studies/{study_id}").json()
    return study


def _wait(service: Service, study_id: int) -> dict[str, Any]:
    service.wait_for(
        lambda: _study(service, study_id)["state"] in ("completed", "failed"),
        300,
        f"study {study_id} to finish",
    )
    return _study(service, study_id)


def test_pollers_and_probes_for_a_minute_change_nothing(service: Service) -> None:
    quiet_id = _run(service, "without-load", pause=False)
    assert _wait(service, quiet_id)["state"] == "completed", service.log_tail()

    loaded_id = _run(service, "under-load")
    service.wait_for(
        lambda: _study(service, loaded_id)["trial_counts"]["running"] > 0, 60, "a trial to start"
    )
    started = time.monotonic()
    polls, probes = asyncio.run(_load(service.url, loaded_id, LOAD_FOR_S))
    assert _study(service, loaded_id)["state"] == "running", "the study ran through the minute"
    loaded = _wait(service, loaded_id)
    assert loaded["state"] == "completed", service.log_tail()

    served, probed = sum(polls.values()), sum(probes.values())
    print(
        f"{CLIENTS} clients, {time.monotonic() - started:.0f} s: {served} polls, "
        f"{served / LOAD_FOR_S:.0f}/s, answers {dict(polls)}; {probed} hostile requests, "
        f"answers {dict(probes)}"
    )
    assert set(polls) == {"200"}, f"some polls failed: {dict(polls)}"
    assert served > CLIENTS * 10, "the clients really polled"
    wrong = {answer: n for answer, n in probes.items() if not answer.isdigit()}
    assert not wrong, f"hostile requests not refused as they should be: {wrong}"
    assert probed >= sum(map(len, _probes(1, 1))), "every probe was tried"

    studies = _api(service, "GET", "/studies").json()
    assert studies["count"] == 2, "no probe stored a study"
    assert loaded["submitted_by"] == "default" and loaded["cancelled_by"] is None
    quiet_results, loaded_results = _results(service, quiet_id), _results(service, loaded_id)
    assert len(quiet_results) == 9
    assert {r["state"] for r in quiet_results} >= {"completed"}
    assert loaded_results == quiet_results
