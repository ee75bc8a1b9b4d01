"""The commands that read and change studies on a running service, each through one
``Client``: submit, studies, status, watch, best, refine, export, rate and cancel."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from rich.live import Live

from gentune.service.cli.connection import (
    DEFAULT_URL,
    TokenOption,
    UrlOption,
    downloaded,
    error_words,
    reports_api_errors,
)
from gentune.service.cli.render import (
    FINISHED_STUDY_STATES,
    console,
    err_console,
    fail,
    print_table,
    say,
    status_line,
    studies_table,
    study_line,
    trials_table,
    watch_view,
)
from gentune.service.client import ApiError, Client

StudyStateName = Literal["queued", "running", "completed", "failed", "cancelled"]
POLL_TIMEOUT_S = 10.0
EXPORT_FORMATS = ("json", "trials.csv", "metrics.csv")


def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Study definition (YAML or JSON).")
    ],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a study definition; print the study's id and the URL of its page."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text")
    try:
        # Sent as text, not parsed here: the service then names the line of each error.
        study = Client(url, token).post(
            "/studies/yaml", content=text.encode(), headers={"Content-Type": "application/yaml"}
        )
    except ApiError as error:
        fail(error_words(error, source=file))
    say(f"study {study['id']} ({study['name']}) queued: {study['page_url']}")


@reports_api_errors
def studies(
    url: UrlOption = DEFAULT_URL,
    state: Annotated[
        StudyStateName | None, typer.Option(help="Only studies in this state.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many to list.")] = 20,
) -> None:
    """List studies, newest first: state, trials finished, best value and time taken."""
    page = Client(url).get("/studies", limit=limit, state=state)
    if not page["data"]:
        console.print(f"no {state} studies" if state else "no studies", highlight=False)
        return
    print_table(studies_table(page, state))


@reports_api_errors
def status(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    why: Annotated[
        bool, typer.Option("--why", help="List every pruned trial with its reason.")
    ] = False,
) -> None:
    """Show a study's state, trial counts and best value, and what stopped pruned trials."""
    client = Client(url)
    study = client.get(f"/studies/{study_id}")
    console.print(status_line(study), soft_wrap=True)
    if study.get("baseline"):
        say(f"vs defaults: {study['baseline']['summary']}")
    if study["trial_counts"]["pruned"] == 0:
        return
    pruned = client.get(f"/studies/{study_id}/trials", state="pruned", limit=1000)["data"]
    by = Counter(trial["pruned_by"] or "unrecorded" for trial in pruned)
    say("pruned by: " + ", ".join(f"{name} {n}" for name, n in sorted(by.items())))
    for trial in pruned if why else []:
        say(f"  trial {trial['id']}: {trial['reason']}")


@reports_api_errors
def watch(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    top: Annotated[
        int, typer.Option(min=1, max=100, help="How many of the best trials to show.")
    ] = 10,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the study.")
    ] = 2.0,
    patience: Annotated[
        float,
        typer.Option(min=0, help="Seconds to keep retrying an unreachable service before failing."),
    ] = 30.0,
) -> None:
    """Follow a study until it ends: its progress and its top trials, then a summary.

    A terminal gets a view redrawn in place; a pipe or a CI log gets a line per change."""
    watching = StudyWatch(Client(url, timeout=POLL_TIMEOUT_S), study_id, top, interval, patience)
    try:
        study = watching.live() if console.is_terminal else watching.lines()
    except KeyboardInterrupt:
        err_console.print("stopped watching; the study keeps running", highlight=False)
        raise typer.Exit(130) from None
    say(f"{study_line(study)}; {study['page_url']}")


@dataclass
class StudyWatch:
    """`gentune watch` of one study: polls the API every ``interval`` seconds and quietly rides
    out a service that restarts or is briefly unreachable for up to ``patience`` seconds."""

    client: Client
    study_id: int
    top: int
    interval: float
    patience: float

    def live(self) -> Any:
        """Redraw the study's progress and top trials in place until the study ends."""
        with Live(console=console, auto_refresh=False) as live:
            while True:
                study = self._get(f"/studies/{self.study_id}")
                trials, count = self.top_trials(study)
                live.update(watch_view(study, trials, count), refresh=True)
                if study["state"] in FINISHED_STUDY_STATES:
                    return study
                time.sleep(self.interval)

    def lines(self) -> Any:
        """Print a line each time the study's state, trial counts or best change, and its top
        trials once it has ended: readable in a log, unlike a redrawn view."""
        last_line = None
        while True:
            study = self._get(f"/studies/{self.study_id}")
            if study["state"] in FINISHED_STUDY_STATES:
                break
            line = study_line(study)
            if line != last_line:
                say(line)
                last_line = line
            time.sleep(self.interval)
        trials, count = self.top_trials(study)
        print_table(trials_table(study, trials, count, one_line_rows=False))
        return study

    def top_trials(self, study: Any) -> tuple[list[Any], int]:
        """The study's ``top`` trials by value, best first, and how many trials it has."""
        order = "desc" if study["objective"]["direction"] == "maximize" else "asc"
        page = self._get(
            f"/studies/{study['id']}/trials", sort="value", order=order, limit=self.top
        )
        return page["data"], page["count"]

    def _get(self, path: str, **params: Any) -> Any:
        """GET from the API, retrying while the service cannot answer; errors the service
        means (a 404, ...) fail at once, in its words."""
        give_up_at = time.monotonic() + self.patience
        while True:
            try:
                return self.client.get(path, **params)
            except ApiError as error:
                if not error.transient:
                    raise
                problem = str(error)
            left = give_up_at - time.monotonic()
            if left <= 0:
                fail(
                    f"lost the gentune service at {self.client.url} for {self.patience:g} s: "
                    f"{problem}"
                )
            time.sleep(min(self.interval, left))


@reports_api_errors
def best(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    download: Annotated[
        Path | None, typer.Option(help="Also save config.yaml and checkpoint.pt in this folder.")
    ] = None,
) -> None:
    """Print the best config of a study as YAML (a multi-objective study's Pareto set too);
    optionally download it and its checkpoint."""
    client = Client(url)
    result = client.get(f"/studies/{study_id}/best")
    say(yaml.safe_dump(_best_shown(result), sort_keys=False), end="")
    if download is not None:
        say(_save_best(client, result, download))


def _best_shown(result: Any) -> dict[str, Any]:
    """What ``gentune best`` prints of ``GET /studies/{id}/best``."""
    shown: dict[str, Any] = {
        "trial_id": result["trial_id"],
        "value": result["value"],
        "step": result["step"],
        "config": result["config"],
    }
    baseline = result.get("baseline")
    if baseline:
        shown["baseline"] = {
            key: baseline[key] for key in ("trial_id", "state", "value", "improvement", "summary")
        }
    if result.get("pareto"):
        shown["pareto"] = [
            {"trial_id": p["trial_id"], **p["values"], "params": p["params"]}
            for p in result["pareto"]
        ]
    return shown


def _save_best(client: Client, result: Any, folder: Path) -> str:
    """Write the best config (and its checkpoint, if it kept one) in ``folder``; say what."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(result["config"], sort_keys=False))
    if not result["checkpoint_url"]:
        return f"saved {config_file}; trial {result['trial_id']} kept no checkpoint"
    checkpoint_file = folder / "checkpoint.pt"
    checkpoint_file.write_bytes(downloaded(client, result["checkpoint_url"]))
    return f"saved {config_file} and {checkpoint_file} (step {result['step']})"


@reports_api_errors
def refine(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    factor: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="Each numeric range's new width, as a share."),
    ] = 0.5,
    trials: Annotated[
        int | None, typer.Option(min=1, help="The follow-up's n_trials; default: the same.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the definition to this file instead of printing.")
    ] = None,
    submit: Annotated[bool, typer.Option(help="Submit the follow-up study at once.")] = False,
) -> None:
    """A follow-up study narrowed around a study's best trial, warm-started from its best
    trials: printed as YAML (or written to --output) to edit, or submitted with --submit."""
    client = Client(url, token)
    definition = client.get(f"/studies/{study_id}/refined", factor=factor, n_trials=trials)
    text = yaml.safe_dump(definition, sort_keys=False)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        say(f"wrote {output}; submit it with: gentune submit {output}")
    elif not submit:
        say(text, end="")
    if submit:
        study = client.post("/studies", json=definition)
        say(f"study {study['id']} ({study['name']}) queued: {study['page_url']}")


@reports_api_errors
def export(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    out: Annotated[Path, typer.Option(help="Folder to write the files in.")] = Path("."),
) -> None:
    """Write a study's record: study-ID.json (definition, trials, configs, every metric at
    every step), study-ID.trials.csv (one row per trial) and study-ID.metrics.csv."""
    client = Client(url, token)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in EXPORT_FORMATS:
        content = client.download(f"/studies/{study_id}/export", format=fmt)
        path = out / f"study-{study_id}.{fmt}"
        path.write_bytes(content)
        say(f"wrote {path} ({len(content):,} bytes)")


@reports_api_errors
def rate(
    trial_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    score: Annotated[
        int | None, typer.Option(min=1, max=5, help="1 (poor) to 5 (excellent).")
    ] = None,
    better_than: Annotated[
        int | None, typer.Option(help="Another trial of the study whose samples look worse.")
    ] = None,
) -> None:
    """Rate a trial's samples (look at them with `gentune sample` or on its page): a score,
    or a pick of them over another trial's. Stored with your token's name."""
    client = Client(url, token)
    body = {k: v for k, v in (("score", score), ("better_than", better_than)) if v is not None}
    rating = client.post(f"/trials/{trial_id}/ratings", json=body)
    trial = client.get(f"/trials/{trial_id}")
    given = (
        f"score {rating['score']}"
        if rating["score"] is not None
        else f"better than trial {rating['better_than']}"
    )
    mean = trial["rating_mean"]
    say(
        f"trial {trial_id}: {given} by {rating['rater']}; now "
        + (f"{mean:.2f} from {trial['rating_count']} score(s)" if mean is not None else "no score")
        + f", {trial['wins']} win(s), {trial['losses']} loss(es)"
    )


@reports_api_errors
def cancel(study_id: int, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Cancel a queued study at once, or ask a running study's worker to stop it."""
    study = Client(url, token).post(f"/studies/{study_id}/cancel")
    if study["state"] == "cancelled":
        outcome = "cancelled" + (f" ({study['state_reason']})" if study["state_reason"] else "")
    else:
        outcome = f"{study['state']}, cancel requested: its worker stops its trials shortly"
    say(f"study {study['id']} ({study['name']}) {outcome}")
