"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright)
against a running service with a real study. Pages must load without console errors, show
what the API has, and follow the study live.

Needs /usr/bin/chromium (apt-get install chromium). Without it these tests skip, except in
CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import yaml

from tests.support.databases import new_database_url
from tests.support.servers import Service, free_port, service_env, start, stop
from tests.support.specs import UNSTABLE_RING_STUDY

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = os.environ.get("GENTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = os.environ.get("GENTUNE_SCREENSHOT_DIR")
"""Set to a folder to keep a screenshot of each page the tests visit."""

# Lines Chromium writes about its software GL that say nothing about the page.
IGNORED_CONSOLE = ("GL Driver Message", "GPU stall due to ReadPixels", "WebGL")

# One trial at a time, so that the page has time to show the study growing.
RING_STUDY = {
    **UNSTABLE_RING_STUDY,
    "name": "browser-ring",
    "budget": {"n_trials": 4, "max_concurrent": 1},
}


@dataclass
class Console:
    """What the page said: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _on_console(self, message: Any) -> None:
        if message.type == "error" and not any(s in message.text for s in IGNORED_CONSOLE):
            self.errors.append(f"console: {message.text} at {message.location}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (see README, Tests)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Console]]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    console = Console()
    console.watch(tab)
    yield tab, console
    context.close()


def shot(tab: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_a_bad_definition_shows_its_field_error_and_stores_nothing(
    service: Service, page: tuple[Any, Console]
) -> None:
    tab, console = page
    before = service.api("GET", "/studies").json()["count"]
    bad = yaml.safe_dump(
        {**RING_STUDY, "search_space": {"lr_g": {"type": "float", "low": 0.1, "high": 0.01}}},
        sort_keys=False,
    )
    tab.goto(f"{service.url}/")
    tab.fill("#definition", bad)
    tab.click("#submit")
    error = tab.locator("#errors li").first
    error.wait_for(timeout=10_000)
    assert error.get_attribute("data-field") == "search_space.lr_g.high"
    assert "low" in error.inner_text()  # the API's sentence about high and low
    line = int(error.get_attribute("data-line") or 0)
    assert bad.splitlines()[line - 1].strip().startswith("high:")
    assert tab.locator("#gutter .bad").inner_text() == str(line)
    assert service.api("GET", "/studies").json()["count"] == before
    # Chromium logs every 4xx response; this one is the expected answer, handled by the page.
    assert [e for e in console.errors if "status of 422" not in e] == []


def test_submit_from_the_dashboard_and_watch_the_study_live(
    service: Service, page: tuple[Any, Console]
) -> None:
    """Submitted from the form, the study's page follows it without a reload: trials appear,
    curves grow, the pruned trial gets its reason; at the end every trial is in the table."""
    tab, console = page
    tab.goto(f"{service.url}/")
    tab.fill("#definition", yaml.safe_dump(RING_STUDY, sort_keys=False))
    tab.click("#submit")
    tab.wait_for_url("**/studies/*", timeout=15_000)
    study_id = int(tab.url.rstrip("/").split("/")[-1])
    tab.evaluate("window.__sameDocument = true")

    points = (
        "() => (document.querySelector('#chart-curves').data || [])"
        ".reduce((n, trace) => n + trace.x.length, 0)"
    )
    tab.wait_for_function(f"({points})() > 0", timeout=120_000)
    first = tab.evaluate(f"({points})()")
    tab.wait_for_function(f"({points})() > {first}", timeout=120_000)
    assert tab.evaluate("window.__sameDocument") is True  # updated in place, not reloaded

    service.wait_for_study(study_id, ("completed", "failed"), timeout=600)
    tab.wait_for_selector("#live:text('final')", timeout=20_000)
    trials = service.api("GET", f"/studies/{study_id}/trials").json()["data"]
    rows = tab.locator("#trials tbody tr")
    assert rows.count() == len(trials) == 4
    shown = {int(rows.nth(i).get_attribute("data-trial-id")) for i in range(rows.count())}
    assert shown == {t["id"] for t in trials}

    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, trials  # lr 0.3 blows the ring GAN up: a stability rule stops it
    reason_cell = tab.locator(f"#trials tr[data-trial-id='{pruned[0]['id']}'] td.reason")
    assert pruned[0]["pruned_by"] in reason_cell.inner_text()

    for chart in ("#chart-history", "#chart-curves", "#chart-parallel"):
        assert tab.locator(f"{chart} .main-svg").count() > 0, chart
    importances = service.api("GET", f"/studies/{study_id}/importances").json()
    if importances["importances"]:
        assert tab.locator("#chart-importances .main-svg").count() > 0
    else:  # e.g. fewer than two completed trials: the page says why, in the API's words
        assert importances["note"] in tab.locator("#importances-note").inner_text()
    best = service.api("GET", f"/studies/{study_id}/best").json()
    assert tab.locator("#best-config").inner_text().strip().startswith("dataset:")
    href = tab.locator("#download-checkpoint").get_attribute("href")
    assert href == f"/api/v1/trials/{best['trial_id']}/checkpoint?kind=best"
    assert service.api("GET", href.removeprefix("/api/v1")).status_code == 200
    shot(tab, "study")
    assert console.errors == []


def test_trial_page_draws_every_metric_thresholds_and_samples(
    service: Service, page: tuple[Any, Console]
) -> None:
    tab, console = page
    study = next(
        s for s in service.api("GET", "/studies").json()["data"] if s["name"] == "browser-ring"
    )
    best_id = study["best"]["trial_id"]
    trial = service.api("GET", f"/trials/{best_id}").json()
    tab.goto(f"{service.url}/trials/{best_id}")
    tab.wait_for_selector("#live:text('final')", timeout=20_000)
    for name in trial["metrics"]:
        slug = "metric-" + re.sub(r"[^a-z0-9]+", "-", name, flags=re.IGNORECASE)
        assert tab.locator(f"[id='{slug}'] .main-svg").count() > 0, name
    # gan2d's default rules draw their thresholds, e.g. the mode-collapse ratio on diversity
    assert tab.locator("[id='metric-stability-diversity'] .shapelayer path").count() > 0
    samples = trial["samples"]
    assert len(samples) == trial["last_step"]  # one picture per evaluation
    slider = tab.locator("#sample-slider")
    assert slider.get_attribute("max") == str(len(samples) - 1)
    slider.fill("0")
    assert tab.locator("#sample-label").inner_text().startswith(f"step {samples[0]['step']}")
    tab.wait_for_function(
        "() => { const img = document.querySelector('#sample-image');"
        " return img.complete && img.naturalWidth > 0; }",
        timeout=10_000,
    )
    assert tab.locator("#sample-image").get_attribute("src") == (
        f"/api/v1/trials/{best_id}/artifacts/samples-{samples[0]['step']}"
    )
    for key in trial["run_info"]:  # the reproducibility record: versions, code, device
        assert tab.locator(f"#run-info dt:text-is('{key}')").count() == 1, key
    assert {"code", "torch", "optuna", "device"} <= set(trial["run_info"])
    assert tab.inner_text("#reproduce-command") == f"gentune reproduce {best_id}"
    tab.click("#rate [data-score='4']")
    tab.wait_for_selector("#rate-result .notice:text('Scored 4 by anonymous')", timeout=10_000)
    assert tab.inner_text("#rating-summary").startswith("4 from 1 score(s)")
    assert service.api("GET", f"/trials/{best_id}").json()["rating_count"] == 1
    manifest = tab.locator("#manifest-link").get_attribute("href")
    assert service.api("GET", manifest.removeprefix("/api/v1")).json()["trial_id"] == best_id
    assert tab.locator("#checkpoints a").count() == len(trial["checkpoints"]) == 2
    shot(tab, "trial")
    assert console.errors == []


def test_refine_from_the_study_page_runs_the_best_config_first(
    service: Service, page: tuple[Any, Console]
) -> None:
    """Refine…: the follow-up definition opens in the form; submitted, it runs the earlier
    best config first and its trial page says where that config came from."""
    tab, console = page
    spec = {
        "name": "browser-quadratic",
        "trainer": "quadratic",
        "params": {"epochs": 4},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.4}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "sampler": {"type": "random", "seed": 1},
        "budget": {"n_trials": 3, "max_concurrent": 1},
    }
    source = service.api("POST", "/studies", json=spec).json()
    assert service.wait_for_study(source["id"], ("completed",), 120)
    best = service.api("GET", f"/studies/{source['id']}/best").json()
    tab.goto(f"{service.url}/studies/{source['id']}")
    tab.wait_for_selector("#refine:not([hidden])", timeout=20_000)
    for link, kind in (("json", "application/json"), ("trials", "text/csv")):
        href = tab.locator(f"#export-{link}").get_attribute("href")
        exported = service.api("GET", href.removeprefix("/api/v1"))
        assert exported.status_code == 200 and exported.headers["content-type"].startswith(kind)
    tab.click("#refine")
    tab.wait_for_function(
        "() => document.querySelector('#definition').value"
        " || document.querySelector('#submit-result').textContent",
        timeout=10_000,
    )
    assert tab.input_value("#definition"), (tab.inner_text("#submit-result"), console.errors)
    definition = json.loads(tab.input_value("#definition"))
    assert definition["name"] == "browser-quadratic-refined"
    assert definition["warm_start"]["from_study"] == source["id"]
    definition["budget"] = {"n_trials": 1, "max_concurrent": 1}  # edited before submitting
    tab.fill("#definition", json.dumps(definition, indent=2))
    tab.click("#submit")
    tab.wait_for_url("**/studies/*", timeout=15_000)
    study_id = int(tab.url.rstrip("/").split("/")[-1])
    assert service.wait_for_study(study_id, ("completed", "failed"), 300)["state"] == "completed"
    trial = service.api("GET", f"/studies/{study_id}/trials").json()["data"][0]
    origin = f"warm start: study {source['id']} trial {best['trial_id']}"
    assert trial["origin"] == origin and trial["params"] == best["params"]
    tab.goto(f"{service.url}/trials/{trial['id']}")
    tab.wait_for_selector(f"#facts span:text-is('{origin}')", timeout=20_000)
    assert console.errors == []


def test_a_multi_objective_study_page_draws_its_pareto_front(
    service: Service, page: tuple[Any, Console]
) -> None:
    tab, console = page
    spec = {
        "name": "browser-pareto",
        "trainer": "gan2d",
        "params": {"dataset": "ring8", "epochs": 2, "iters_per_epoch": 20, "eval_samples": 500},
        "search_space": {"hidden": {"type": "categorical", "choices": [16, 64, 128]}},
        "objectives": [
            {"metric": "mode_score", "direction": "maximize"},
            {"metric": "params_millions", "direction": "minimize"},
        ],
        "constraints": [{"metric": "params_millions", "min": 0.002}],
        "sampler": {"type": "nsga2", "seed": 0},
        "points_to_evaluate": [{"hidden": 16}, {"hidden": 64}, {"hidden": 128}],
        "baseline": False,  # the three points are the whole study
        "budget": {"n_trials": 3, "max_concurrent": 2},
    }
    created = service.api("POST", "/studies", json=spec)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    assert service.wait_for_study(study_id, ("completed",), 180)
    pareto = service.api("GET", f"/studies/{study_id}/best").json()["pareto"]
    tab.goto(f"{service.url}/studies/{study_id}")
    tab.wait_for_selector("#pareto-panel:not([hidden]) #chart-pareto .main-svg", timeout=20_000)
    tab.wait_for_selector(f"#pareto-note:text('{len(pareto)} trial(s) in the Pareto set')")
    assert tab.locator("#trials .infeasible").count() == 1, "hidden 16 is under the bound"
    shot(tab, "pareto")
    assert console.errors == []


def test_studies_page_and_optuna_dashboard_load(
    service: Service, page: tuple[Any, Console]
) -> None:
    tab, console = page
    tab.goto(f"{service.url}/")
    listed = service.api("GET", "/studies", params={"limit": 25}).json()["data"]
    rows = tab.locator("#studies tbody tr[data-study-id]")
    rows.first.wait_for(timeout=10_000)
    assert rows.count() == len(listed)
    assert rows.first.get_attribute("data-study-id") == str(listed[0]["id"])
    shot(tab, "studies")

    tab.goto(f"{service.url}/optuna/")
    tab.wait_for_url("**/optuna/dashboard", timeout=10_000)
    name = f"gentune-{listed[0]['id']}"
    tab.get_by_text(name).first.wait_for(timeout=20_000)
    assert console.errors == []


def test_login_guards_a_protected_dashboard_and_a_forged_change_is_refused(
    tmp_path: Path, page: tuple[Any, Console]
) -> None:
    token = "a-browser-test-token-0123456789"
    database_url, cleanup = new_database_url(tmp_path)
    env = {
        **service_env(database_url, tmp_path / "artifacts"),
        "GENTUNE_API_TOKEN": token,
        "GENTUNE_PROTECT_READS": "true",
    }
    port = free_port()
    api = start(["serve", "--port", str(port), "--no-worker"], env, tmp_path / "api.log")
    url = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {token}"}
    tab, console = page
    try:
        Service(url, database_url, tmp_path, env, tmp_path / "api.log").wait_for(
            lambda: _answers(f"{url}/api/v1/health"), 60, "the API"
        )
        tab.goto(f"{url}/")
        tab.wait_for_url(re.compile(r"/login\?next=%2F$"))
        tab.fill("#token", "not-the-token")
        tab.click("#login")
        tab.locator("#login-result .error").wait_for(timeout=10_000)
        tab.fill("#token", token)
        tab.click("#login")
        tab.wait_for_url(f"{url}/")
        tab.locator("#session strong").wait_for(timeout=10_000)
        assert tab.locator("#session").inner_text().startswith("Logged in as default")
        cookies = {c["name"]: c for c in tab.context.cookies()}
        assert (
            cookies["gentune_token"]["httpOnly"]
            and cookies["gentune_token"]["sameSite"] == "Strict"
        )
        assert tab.evaluate("document.cookie").find(token) == -1, "scripts cannot read the token"

        tab.fill("#definition", yaml.safe_dump({**RING_STUDY, "name": "logged-in"}))
        tab.click("#submit")
        tab.wait_for_url(re.compile(r"/studies/\d+$"))
        study_id = int(tab.url.rsplit("/", 1)[1])
        study = httpx.get(f"{url}/api/v1/studies/{study_id}", headers=bearer).json()
        assert study["submitted_by"] == "default"

        # What a forged request looks like: the cookie goes along, the CSRF header does not.
        status = tab.evaluate(
            f"fetch('/api/v1/studies/{study_id}/cancel', {{method: 'POST'}}).then(r => r.status)"
        )
        assert status == 403
        study = httpx.get(f"{url}/api/v1/studies/{study_id}", headers=bearer).json()
        assert not study["cancel_requested"], "the forged cancel changed nothing"

        # After a login the page goes back to `next` only when it is a page of this site.
        for hostile in (
            "/\t/evil.example/x",
            "/\\evil.example",
            "//evil.example",
            "https://evil.example/",
        ):
            tab.goto(f"{url}/login?" + urlencode({"next": hostile}))
            tab.fill("#token", token)
            tab.click("#login")
            tab.wait_for_url(f"{url}/", timeout=10_000)
            assert urlsplit(tab.url).netloc == urlsplit(url).netloc, (hostile, tab.url)
        tab.goto(f"{url}/login?" + urlencode({"next": f"/studies/{study_id}?x=1"}))
        tab.fill("#token", token)
        tab.click("#login")
        tab.wait_for_url(f"{url}/studies/{study_id}?x=1", timeout=10_000)
        errors = [e for e in console.errors if not re.search(r"status of (401|403)", e)]
        assert errors == []
    finally:
        stop(api)
        cleanup()  # type: ignore[operator]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False
